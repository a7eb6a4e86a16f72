"""The last step of issue 28, seen as the radiologist sees it: after ``medimg pacs push``, Orthanc's own web
viewer (Orthanc Explorer, in a real Chromium) lists the SEG and the SR beside the CT they were made from.

Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) is started by the test with authentication on
(:class:`medimg.pacs.local_orthanc.LocalOrthanc`); the browser logs in with HTTP basic authentication. The
screenshot goes to ``outputs/browser/pacs-explorer.png``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from debian_support import apt_install
from orthanc_server import USER, running_orthanc

from medimg.cli import main
from medimg.io import Volume, load
from medimg.io.derived import write_seg
from medimg.io.derived.sr import write_measurement_report
from medimg.io.dicom.write import write_series

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[1] / "outputs" / "browser"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """A CT series stored in a fresh Orthanc, and its SEG and SR sent there by ``medimg pacs push``."""
    why = apt_install(["chromium"], lambda: os.path.exists(CHROMIUM))
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("explorer")
    with running_orthanc() as server:
        rng = np.random.default_rng(7)
        ct = Volume(rng.integers(-200, 300, size=(16, 12, 5)).astype(np.int16), np.diag([0.8, 0.8, 3.0, 1.0]))
        patient = {"PatientID": "EXPL1", "PatientName": "TEST^EXPLORER"}
        files = write_series(ct, root / "ct", modality="CT", series_description="abdomen portal",
                             rescale=(1.0, -1024.0), extra=patient)  # fmt: skip
        server.upload(files)
        mask = np.zeros(ct.shape, dtype=np.uint8)
        mask[3:9, 2:7, 1:4] = 1
        seg = write_seg(Volume(mask, load(root / "ct").affine), root / "ct", root / "seg.dcm", labels={1: "liver"})
        sr, _ = write_measurement_report(seg, root / "ct", root / "sr.dcm")
        conf = root / "pacs.toml"
        conf.write_text(server.config_toml())
        with pytest.MonkeyPatch.context() as env:  # the PACS file and its credentials, for this push only
            env.setenv("MEDIMG_PACS_CONFIG", str(conf))
            for key, value in server.credentials_env().items():
                env.setenv(key, value)
            assert main(["pacs", "push", str(seg), str(sr)]) == 0
        study_uid = str(pydicom.dcmread(files[0]).StudyInstanceUID)
        yield {"server": server, "study_uid": study_uid}


def test_orthanc_explorer_lists_the_pushed_seg_and_sr(pushed):
    from playwright.sync_api import sync_playwright

    server = pushed["server"]
    query = {"Level": "Study", "Query": {"StudyInstanceUID": pushed["study_uid"]}}
    (study_id,) = server.rest("/tools/find", "POST", json.dumps(query).encode())
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            context = browser.new_context(http_credentials={"username": USER, "password": server.password},
                                          viewport={"width": 1200, "height": 900})  # fmt: skip
            page = context.new_page()
            page.goto(f"{server.url}/app/explorer.html#study?uuid={study_id}")
            listing = page.locator("#list-series")
            listing.get_by_text("SEG", exact=False).first.wait_for(timeout=60_000)
            text = listing.inner_text()
            page.screenshot(path=str(SHOTS / "pacs-explorer.png"), full_page=True)
        finally:
            browser.close()
    # the CT, the SEG and the SR are each one series of the study, as the radiologist's PACS shows them
    assert "abdomen portal" in text, text
    assert "Modality: SEG" in text and "Modality: SR" in text and "Modality: CT" in text, text
    assert server.password not in text
    assert (SHOTS / "pacs-explorer.png").stat().st_size > 5000
