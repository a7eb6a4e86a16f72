"""A PACS that goes down in the middle of a pull or a push, and comes back (issue 28).

A real Orthanc (tests/orthanc_server.py) holds a 300-instance CT series of 8 x 8 slices. It is killed (SIGKILL, a
crash mid-transfer) once part of the series has arrived, then started again on the same storage and ports. The
interrupted command must fail with one ``medimg: error:`` line and exit 2 -- no traceback, no password -- and
running it again must resume: only what is missing moves, nothing is lost, nothing is stored twice. Both
protocols are interrupted in turn (C-GET / WADO-RS for the pull, C-STORE / STOW-RS for the push).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from orthanc_server import MEDIMG_AE, PACS_AE, USER, Orthanc, running_orthanc

from medimg.cli import main
from medimg.io import Volume, load
from medimg.io.dicom.write import write_series

N = 300  # instances per series, as the issue asks
EXTRA = {"PatientID": "FAULTS1", "PatientName": "DOE^JOHN", "StudyDate": "20260102", "StudyTime": "120000",
         "StudyID": "1", "AccessionNumber": "F1", "ReferringPhysicianName": ""}  # fmt: skip


@pytest.fixture(scope="module")
def orthanc():
    with running_orthanc("medimg-orthanc-faults-") as server:
        yield server


@pytest.fixture
def env(orthanc, tmp_path, monkeypatch):
    conf = tmp_path / "pacs.toml"
    conf.write_text(f"""[faults]
dicomweb = "{orthanc.dicomweb_url}"
host = "127.0.0.1"
port = {orthanc.dicom_port}
ae_title = "{PACS_AE}"
calling_ae = "{MEDIMG_AE}"
timeout = 10
""")
    monkeypatch.setenv("MEDIMG_PACS_CONFIG", str(conf))
    monkeypatch.setenv("MEDIMG_PACS_USER", USER)
    monkeypatch.setenv("MEDIMG_PACS_PASSWORD", orthanc.password)
    return conf


def _series(folder: Path, seed: int) -> list[Path]:
    """``N`` axial 8 x 8 CT slices (int16) of one new study."""
    rng = np.random.default_rng(seed)
    ct = Volume(rng.integers(-1000, 1500, size=(8, 8, N)).astype(np.int16), np.diag([0.7, 0.7, 1.0, 1.0]))
    return write_series(ct, folder, modality="CT", study_uid=pydicom.uid.generate_uid(), extra=EXTRA)


@contextlib.contextmanager
def _crash_when(orthanc: Orthanc, count: Callable[[], int], at: int) -> Iterator[threading.Event]:
    """Kill Orthanc from a watcher thread once ``count()`` reaches ``at``; the event says it happened."""
    fired, done = threading.Event(), threading.Event()

    def watch() -> None:
        while not done.is_set():
            with contextlib.suppress(Exception):  # Orthanc busy or the folder not made yet: look again
                if count() >= at:
                    orthanc.kill()
                    fired.set()
                    return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield fired
    finally:
        done.set()
        thread.join(timeout=30)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["pacs", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _failed_cleanly(rc: int, out: str, err: str, password: str) -> None:
    assert rc == 2, out + err
    assert err.startswith("medimg: error:") and err.count("\n") == 1, err
    assert "Traceback" not in out + err and password not in out + err


def _files(folder: Path) -> list[Path]:
    """Complete instances in a pull folder (the atomic writer's temporary files start with a dot)."""
    return [p for p in folder.glob("*.dcm") if not p.name.startswith(".")] if folder.is_dir() else []


def test_pull_interrupted_by_a_pacs_crash_resumes_without_loss(env, orthanc, tmp_path, capsys, caplog):
    source = _series(tmp_path / "source", seed=1)
    orthanc.upload(source)
    first = pydicom.dcmread(source[0], stop_before_pixels=True)
    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    out = tmp_path / "pulled"
    folder = out / study / series
    argv = ["pull", study, "-o", str(out), "--no-progress"]
    seen = []
    for via, at in (("get", 100), ("dicomweb", 200)):  # C-GET crashes at ~100, the WADO-RS resume at ~200
        with _crash_when(orthanc, lambda: len(_files(folder)), at) as fired:
            rc, o, err = _run(capsys, *argv, "--via", via)
        assert fired.is_set(), f"the pull over {via} finished before Orthanc was stopped: {o}"
        _failed_cleanly(rc, o, err, orthanc.password)
        seen.append(len(_files(folder)))
        assert at <= seen[-1] < N, seen
        for f in _files(folder):  # what is there is whole: a resume may trust it
            assert pydicom.dcmread(f).pixel_array.shape == (8, 8)
        orthanc.start()  # same storage, same ports
    rc, o, err = _run(capsys, *argv, "--via", "get")
    assert rc == 0, err
    assert f"{N - seen[-1]} instance(s) fetched, {seen[-1]} already here" in o, o
    assert sorted(p.name for p in _files(folder)) == sorted(f"{pydicom.dcmread(p).SOPInstanceUID}.dcm" for p in source)
    np.testing.assert_array_equal(load(folder).array, load(tmp_path / "source").array)
    assert orthanc.password not in caplog.text


def test_push_interrupted_by_a_pacs_crash_resumes_and_stores_nothing_twice(env, orthanc, tmp_path, capsys, caplog):
    files = _series(tmp_path / "results", seed=2)
    before = orthanc.count()
    for via, at in (("dimse", 100), ("dicomweb", 200)):
        with _crash_when(orthanc, lambda: orthanc.count() - before, at) as fired:
            rc, o, err = _run(capsys, "push", *map(str, files), "--via", via)
        assert fired.is_set(), f"the push over {via} finished before Orthanc was stopped: {o}"
        _failed_cleanly(rc, o, err, orthanc.password)
        orthanc.start()
        assert at <= orthanc.count() - before < N
    held = orthanc.count() - before
    rc, o, err = _run(capsys, "push", *map(str, files), "--via", "dimse")
    assert rc == 0, err
    assert f"{N - held} arrived, {held} already there, 0 refused" in o, o
    series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    (record,) = [s for s in orthanc.series() if s["MainDicomTags"]["SeriesInstanceUID"] == series_uid]
    assert len(record["Instances"]) == N  # every one there, none twice
    sops = orthanc.sop_uids()
    assert len(sops) == len(set(sops))
    wanted = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    assert wanted <= set(sops)
    assert orthanc.password not in caplog.text + os.environ.get("MEDIMG_PACS_CONFIG", "")
