"""``medimg pacs`` against a real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``, started by the fixture with
HTTP authentication, the DICOMweb plugin and medimg registered as a DICOM modality; see tests/orthanc_server.py).

A small CT series (and a scout beside it) is uploaded once; pulls over WADO-RS, C-GET and C-MOVE must give the
volume loaded from the original files; a SEG written by medimg is pushed and verified by query-back; a push
repeated stores nothing twice; a server answering 200 without storing is caught; wrong password, unknown AE
title, refused C-MOVE destination and an unreachable server are one line, exit 2, and never show the password.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dcmqrscp_server import DcmQrScp
from dcmqrscp_server import ensure_installed as ensure_dcmtk
from orthanc_server import MEDIMG_AE, PACS_AE, USER, Orthanc, SwallowingProxy, free_ports, running_orthanc

from medimg.cli import main
from medimg.errors import ConfigError
from medimg.io import Volume, load
from medimg.io.derived import write_seg
from medimg.io.derived.parametric_map import read_parametric_map
from medimg.io.derived.sr import write_measurement_report
from medimg.io.dicom.write import write_series
from medimg.pacs import connect
from medimg.pacs.config import Pacs, load_pacs, redact_url
from medimg.pacs.dimse import DimseRemote
from medimg.pacs.listen import Listener

SHAPE = (16, 12, 6)
PATIENT_ID, ACCESSION = "MRN8675309", "ACC42"
EXTRA = {"PatientID": PATIENT_ID, "PatientName": "DOE^JANE", "AccessionNumber": ACCESSION, "StudyDate": "20260101",
         "StudyTime": "120000", "StudyID": "1", "PatientBirthDate": "19700101", "PatientSex": "F",
         "ReferringPhysicianName": ""}  # fmt: skip


@pytest.fixture(scope="session")
def orthanc():
    with running_orthanc("medimg-orthanc-") as server:
        yield server


@pytest.fixture(scope="session")
def study(orthanc, tmp_path_factory):
    """A CT series (6 slices of 16 x 12, HU values) and a 1-slice scout of the same study, stored in Orthanc."""
    root = tmp_path_factory.mktemp("source")
    rng = np.random.default_rng(3)
    ct = Volume(rng.integers(-1000, 1500, size=SHAPE).astype(np.int16), np.diag([0.7, 0.8, 2.5, 1.0]))
    study_uid = pydicom.uid.generate_uid()
    ct_files = write_series(ct, root / "ct", modality="CT", series_description="abdomen portal", study_uid=study_uid,
                            rescale=(1.0, -1024.0), extra={**EXTRA, "SliceThickness": "2.5"})  # fmt: skip
    scout = Volume(rng.integers(0, 1000, size=(16, 12, 1)).astype(np.int16), np.eye(4))
    localizer = {**EXTRA, "ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}
    scout_files = write_series(scout, root / "scout", modality="CT", series_description="scout", series_number=2,
                               study_uid=study_uid, extra=localizer)  # fmt: skip
    orthanc.upload(ct_files + scout_files)
    series_uid = str(pydicom.dcmread(ct_files[0]).SeriesInstanceUID)
    return {"root": root, "ct": root / "ct", "study": study_uid, "series": series_uid}


@pytest.fixture
def pacs_env(orthanc, tmp_path, monkeypatch):
    """The PACS file naming the test Orthanc, and the credentials in the environment."""
    conf = tmp_path / "pacs.toml"
    conf.write_text(f"""[test]
dicomweb = "{orthanc.dicomweb_url}"
host = "127.0.0.1"
port = {orthanc.dicom_port}
ae_title = "{PACS_AE}"
calling_ae = "{MEDIMG_AE}"
receive_port = {orthanc.scp_port}
""")
    monkeypatch.setenv("MEDIMG_PACS_CONFIG", str(conf))
    monkeypatch.setenv("MEDIMG_PACS_USER", USER)
    monkeypatch.setenv("MEDIMG_PACS_PASSWORD", orthanc.password)
    monkeypatch.delenv("NETRC", raising=False)
    return conf


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["pacs", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _seg(study: dict, out: Path, seed: int) -> Path:
    """A SEG written by medimg on the CT series: one box per class."""
    source = load(study["ct"])
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[2:9, 3:8, 1:4] = 1
    mask[10:14, 1:5, 2 + seed % 3 :] = 2
    return write_seg(Volume(mask, source.affine), study["ct"], out, labels={1: "liver", 2: "spleen"})


# ---------------------------------------------------------------------------------------------- echo, find
def test_echo_answers_over_dicomweb_and_dimse(pacs_env, orthanc, capsys):
    rc, out, err = run(capsys, "echo")
    assert rc == 0, err
    assert "dicomweb ok" in out and "dimse ok" in out
    assert orthanc.password not in out + err


@pytest.mark.parametrize("via", ["dicomweb", "dimse"])
def test_find_lists_one_row_per_series(pacs_env, study, capsys, via):
    rc, out, err = run(capsys, "find", "--patient-id", PATIENT_ID, "--via", via)
    assert rc == 0, err
    rows = [line for line in out.splitlines() if line.startswith(study["study"])]
    assert len(rows) == 2 and any(study["series"] in r and "abdomen portal" in r for r in rows), out
    assert PATIENT_ID not in out  # searched by, never shown
    rc, out, _ = run(capsys, "find", "--accession", "NO-SUCH", "--via", via)
    assert rc == 0 and "(0 series)" in out


# ---------------------------------------------------------------------------------------------- pull
@pytest.mark.parametrize("via", ["dicomweb", "get", "move"])
def test_pull_gives_the_original_volume_and_resumes(pacs_env, study, tmp_path, capsys, via):
    out_dir = tmp_path / "pulled"
    rc, out, err = run(capsys, "pull", study["study"], "-o", str(out_dir), "--via", via, "--modality", "CT",
                       "--thickness", "1-3", "--no-progress")  # fmt: skip
    assert rc == 0, err
    folder = out_dir / study["study"] / study["series"]
    assert len(list(folder.glob("*.dcm"))) == SHAPE[2], out
    # the scout is CT too, so it comes (the PACS does not say what a localizer is); scan's checks set it aside
    assert "7 instance(s) fetched" in out and "1 series chosen" in out and "(localizer)" in out, out
    ours, original = load(folder), load(study["ct"])
    np.testing.assert_array_equal(ours.array, original.array)
    np.testing.assert_allclose(ours.affine, original.affine, atol=1e-6)
    # resumable: two instances lost -> only those two are fetched again
    for f in sorted(folder.glob("*.dcm"))[:2]:
        f.unlink()
    rc, out, err = run(capsys, "pull", study["study"], "-o", str(out_dir), "--via", via, "--series", study["series"])
    assert rc == 0, err
    assert "2 instance(s) fetched, 4 already here" in out
    np.testing.assert_array_equal(load(folder).array, original.array)


def test_pull_rules_leave_out_what_they_refuse(pacs_env, study, tmp_path, capsys):
    rc, _, err = run(capsys, "pull", study["study"], "-o", str(tmp_path), "--description", "^scout$",
                       "--localizers", "--no-progress")  # fmt: skip
    assert rc == 0, err
    assert not (tmp_path / study["study"] / study["series"]).exists()  # the CT was never fetched
    rc, _, err = run(capsys, "pull", study["study"], "-o", str(tmp_path), "--description", "knee")
    assert rc == 2 and err.startswith("medimg: error:") and "not a series matching the rules" in err


# ---------------------------------------------------------------------------------------------- push
@pytest.mark.parametrize("via", ["dicomweb", "dimse"])
def test_push_seg_and_sr_are_verified_and_twice_stores_nothing_twice(pacs_env, orthanc, study, tmp_path, capsys, via):
    seg = _seg(study, tmp_path / "seg.dcm", seed=0 if via == "dicomweb" else 1)
    sr, _ = write_measurement_report(seg, study["ct"], tmp_path / "sr.dcm")
    sop = str(pydicom.dcmread(seg, stop_before_pixels=True).SOPInstanceUID)
    sr_sop = str(pydicom.dcmread(sr).SOPInstanceUID)
    rc, out, err = run(capsys, "push", str(seg), str(sr), "--via", via)
    assert rc == 0, err
    assert "2 arrived, 0 already there, 0 refused" in out
    held = orthanc.sop_uids()
    assert held.count(sop) == 1 and held.count(sr_sop) == 1
    rc, out, err = run(
        capsys, "push", str(seg), str(sr), str(seg), "--via", "dimse" if via == "dicomweb" else "dicomweb"
    )
    assert rc == 0, err
    assert "0 arrived, 2 already there, 0 refused" in out
    assert sorted(orthanc.sop_uids()) == sorted(held)  # nothing stored twice
    # what the PACS holds is the SEG we wrote: identical pixel data, and highdicom reads it
    seg_series = str(pydicom.dcmread(seg, stop_before_pixels=True).SeriesInstanceUID)
    rc, out, err = run(capsys, "pull", study["study"], "-o", str(tmp_path / "back"), "--series", seg_series)
    assert rc == 0, err
    back = tmp_path / "back" / study["study"] / seg_series / f"{sop}.dcm"
    assert pydicom.dcmread(back).PixelData == pydicom.dcmread(seg).PixelData
    assert hd.seg.segread(back).number_of_segments == 2


def test_push_to_a_server_that_answers_200_and_stores_nothing_fails(pacs_env, orthanc, study, tmp_path, capsys):
    proxy = SwallowingProxy(orthanc.url)
    proxy.start()
    try:
        seg = _seg(study, tmp_path / "seg.dcm", seed=2)
        rc, out, err = run(capsys, "push", str(seg), "--via", "dicomweb", "--url", f"{proxy.url}/dicom-web")
    finally:
        proxy.stop()
    assert rc == 2
    assert "0 arrived, 0 already there, 0 refused, 1 accepted but not stored" in out
    assert err.count("\n") == 1 and "answered success without storing" in err


# ---------------------------------------------------------------------------------------------- faults
def _faults(orthanc: Orthanc, study: dict) -> dict[str, tuple[list[str], str]]:
    closed = free_ports(1)[0]
    return {
        "wrong password": (["echo", "--via", "dicomweb"], "refused the credentials (HTTP 401)"),
        "unknown AE": (["echo", "--via", "dimse", "--calling-ae", "STRANGER"], "refused the association"),
        "C-MOVE destination": (["pull", study["study"], "--via", "move", "--move-ae", "NOBODY", "-o", "{tmp}"],
                               "register AE title NOBODY with this host and port"),
        "unreachable DICOMweb": (["echo", "--via", "dicomweb", "--url", f"http://127.0.0.1:{closed}/dicom-web"],
                                 "cannot reach"),
        "unreachable DIMSE": (["echo", "--via", "dimse", "--port", str(closed)], "cannot reach"),
    }  # fmt: skip


@pytest.mark.parametrize("case", ["wrong password", "unknown AE", "C-MOVE destination", "unreachable DICOMweb",
                                  "unreachable DIMSE"])  # fmt: skip
def test_faults_are_one_line_exit_2_without_the_password(
    pacs_env, orthanc, study, tmp_path, capsys, caplog, monkeypatch, case
):
    argv, expected = _faults(orthanc, study)[case]
    if case == "wrong password":
        monkeypatch.setenv("MEDIMG_PACS_PASSWORD", "not-" + orthanc.password)
    rc, out, err = run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert rc == 2, out + err
    assert err.startswith("medimg: error:") and err.count("\n") == 1, err
    assert expected in err
    assert "Traceback" not in out + err
    for secret in (orthanc.password, "not-" + orthanc.password):
        assert secret not in out + err + caplog.text


# ---------------------------------------------------------------------------------------------- credentials
def test_netrc_credentials_work_and_urls_with_passwords_are_refused(pacs_env, orthanc, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MEDIMG_PACS_USER")
    monkeypatch.delenv("MEDIMG_PACS_PASSWORD")
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {USER} password {orthanc.password}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    rc, out, err = run(capsys, "echo", "--via", "dicomweb")
    assert rc == 0, err
    bad = f"http://{USER}:{orthanc.password}@127.0.0.1:{orthanc.http_port}/dicom-web"
    with pytest.raises(ConfigError) as exc:
        load_pacs("test", dicomweb=bad)
    assert orthanc.password not in str(exc.value)
    assert redact_url(bad) == orthanc.dicomweb_url
    rc, out, err = run(capsys, "echo", "--url", bad)
    assert rc == 2 and orthanc.password not in out + err and os.fspath(netrc) not in err


# ---------------------------------------------------------------------------------------------- a second archive
def test_dcmqrscp_archive_push_move_and_refused_destination_0xa801(study, tmp_path, capsys, monkeypatch):
    """DCMTK's dcmqrscp: C-STORE push verified by C-FIND, a C-MOVE pull to medimg's SCP, and the standard's
    0xA801 for a destination it does not know (Orthanc 1.10 says 0xC000 instead; covered above)."""
    why = ensure_dcmtk()
    if why:
        pytest.skip(why)
    receive_port = free_ports(1)[0]
    archive = DcmQrScp(tmp_path / "dcmqrscp", known=(MEDIMG_AE, receive_port))
    archive.start()
    monkeypatch.setenv("MEDIMG_PACS_CONFIG", str(tmp_path / "none.toml"))
    where = ["--host", "127.0.0.1", "--port", str(archive.port), "--ae", "DCMQRSCP", "--receive-port",
             str(receive_port)]  # fmt: skip
    try:
        rc, out, err = run(capsys, "push", *map(str, sorted(study["ct"].iterdir())), "--via", "dimse", *where)
        assert rc == 0, err + archive.diagnostics()
        assert f"{SHAPE[2]} arrived, 0 already there, 0 refused" in out
        rc, out, err = run(capsys, "pull", study["study"], "-o", str(tmp_path / "moved"), "--via", "move", *where)
        assert rc == 0, err + archive.diagnostics()
        np.testing.assert_array_equal(load(tmp_path / "moved" / study["study"] / study["series"]).array,
                                      load(study["ct"]).array)  # fmt: skip
        rc, out, err = run(capsys, "pull", study["study"], "-o", str(tmp_path / "x"), "--via", "move",
                           "--move-ae", "NOBODY", *where)  # fmt: skip
    finally:
        archive.stop()
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "refused the C-MOVE destination 'NOBODY' (0xA801 Move Destination unknown)" in err


# ---------------------------------------------------------------------------------------------- listen
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small untrained 3D U-Net checkpoint, as tests/test_dicom_seg.py makes one (what it predicts does not
    matter here, only that SEG and SR are written and sent)."""
    import json

    import pytorch_lightning as pl
    import torch

    from medimg.tasks.segmentation import SegmentationTask
    from medimg.transforms.pipelines import Preprocessing

    root = tmp_path_factory.mktemp("ckpt")
    (root / "data").mkdir()
    (root / "data" / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "spleen"}}))
    prep = Preprocessing(spacing=(1.6, 1.8, 4.0), intensity="ct", ct_window=(0.0, 1000.0), patch_size=(16, 16, 16))
    torch.manual_seed(0)
    task = SegmentationTask(net="unet", net_kwargs={"channels": [4, 8], "strides": [2], "num_res_units": 0},
                            roi_size=(16, 16, 16), preprocessing=prep.as_dict())  # fmt: skip
    path = root / "tiny.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                "datamodule_hyper_parameters": {"dataset_dir": str(root / "data")},
                "pytorch-lightning_version": pl.__version__}, path)  # fmt: skip
    return path


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))


def _next_line(lines: queue.Queue, wanted: str, timeout: float) -> str:
    """The next stdout line containing ``wanted`` (the listener's stated bound: ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if wanted in line:
            return line
    raise AssertionError(f"no line with {wanted!r} within {timeout:.0f} s")


def test_listen_segments_each_series_in_turn_pushes_seg_and_sr_and_stops_on_sigterm(
    pacs_env, orthanc, checkpoint, tmp_path
):
    why = ensure_dcmtk()  # storescu, the sender a scanner or router would be
    if why:
        pytest.skip(why)
    rng = np.random.default_rng(9)
    sends = {}
    for name in ("broken", "first", "second"):
        ct = Volume(rng.integers(-1000, 1500, size=SHAPE).astype(np.int16), np.diag([0.7, 0.8, 2.5, 1.0]))
        gaps = [[0, 0, z] for z in (0, 2.5, 5, 12, 14.5, 17)] if name == "broken" else None  # uneven slices
        sends[name] = write_series(ct, tmp_path / name, modality="CT", positions_lps=gaps, extra=EXTRA)
    port = free_ports(1)[0]
    cmd = [sys.executable, "-m", "medimg", "listen", "--model", str(checkpoint), "--port", str(port), "--send-to",
           "test", "--via", "dicomweb", "--idle", "1.5", "--workdir", str(tmp_path / "work"),
           "--threads", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        _next_line(lines, "listening on port", 120)
        for name in ("broken", "first", "second"):
            sent = subprocess.run(["storescu", "-aec", MEDIMG_AE, "127.0.0.1", str(port), *map(str, sends[name])],
                                  capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
            assert sent.returncode == 0, sent.stdout + sent.stderr
        outcomes = [_next_line(lines, "study ", 180) for _ in range(3)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read() if proc.stderr else ""
    uids = {name: pydicom.dcmread(files[0]) for name, files in sends.items()}
    for line, name in zip(outcomes, ("broken", "first", "second"), strict=True):  # handled in arrival order
        assert uids[name].SeriesInstanceUID in line, outcomes
    assert "failed:" in outcomes[0] and "Traceback" not in stderr, stderr  # one bad study does not stop it
    held = set(orthanc.sop_uids())
    for name, line in zip(("first", "second"), outcomes[1:], strict=True):
        assert "pushed: 2 arrived, 0 already there, 0 refused" in line, line
        results = tmp_path / "work" / "results" / uids[name].StudyInstanceUID
        for kind in ("seg", "sr"):
            obj = pydicom.dcmread(results / f"{uids[name].SeriesInstanceUID}_{kind}.dcm", stop_before_pixels=True)
            assert str(obj.SOPInstanceUID) in held
    assert "stopped" in _next_line(lines, "stopped", 10)
    assert PATIENT_ID not in "\n".join(outcomes) + stderr and orthanc.password not in stderr


def test_listen_explain_pushes_the_heatmap_as_a_parametric_map(pacs_env, orthanc, checkpoint, tmp_path):
    """``listen --explain``: the heatmap reaches the PACS as a Parametric Map beside SEG and SR (in-process)."""
    from medimg.inference.model import open_model

    ct = np.random.default_rng(11).integers(-1000, 1500, size=SHAPE).astype(np.int16)
    files = write_series(Volume(ct, np.diag([0.7, 0.8, 2.5, 1.0])), tmp_path / "ct", modality="CT", extra=EXTRA)
    port, outcomes, ready = free_ports(1)[0], [], threading.Event()
    listener = Listener(open_model(checkpoint, device="cpu", threads=1), ae_title=MEDIMG_AE, port=port,
                        workdir=tmp_path / "work", send_to=connect(load_pacs("test"), "dicomweb"), idle_s=0.5,
                        on_outcome=lambda o: (outcomes.append(o), listener.request_stop()),
                        explain_label=1)  # fmt: skip
    (thread := threading.Thread(target=listener.serve, args=(ready.set,), daemon=True)).start()
    assert ready.wait(60)  # scanner: medimg's own C-STORE SCU
    scanner = DimseRemote(Pacs("scanner", host="127.0.0.1", port=port, ae_title=MEDIMG_AE, calling_ae="SCANNER"))
    assert {a.status for a in scanner.store(files).values()} == {0}
    thread.join(300)
    (outcome,) = outcomes
    assert outcome.error is None and "explain" in outcome.seconds, outcome.line()
    assert "pushed: 3 arrived, 0 already there, 0 refused" in outcome.line()
    assert "segmentation timings (s): load" in outcome.line() and "peak RSS" in outcome.line()  # the stages, logged
    pm = next(p for p in outcome.written if p.name.endswith("_pm.dcm"))
    ds = pydicom.dcmread(pm)
    assert ds.SOPClassUID == pydicom.uid.ParametricMapStorage and str(ds.SOPInstanceUID) in orthanc.sop_uids()
    heat = read_parametric_map(pm, reference=tmp_path / "ct")  # on the CT's grid, HiResCAM normalised to [0, 1]
    assert heat.shape == SHAPE and 0 <= float(np.min(heat.array)) <= float(np.max(heat.array)) <= 1
