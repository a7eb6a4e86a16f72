"""The `medimg` command as a user runs it: exit codes, one-line errors, JSON, atomic outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medimg.data.samples import pydicom_folder
from medimg.io.dicom.write import write_series

MEDIMG = [sys.executable, "-m", "medimg"]
ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path | None = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MEDIMG, *args], capture_output=True, text=True, check=False, cwd=cwd)


def test_scan_json_has_the_documented_keys():
    proc = run("scan", str(pydicom_folder() / "77654033"), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {"series_uid", "modality", "n_files", "shape", "spacing", "problems"} <= set(rows[0])
    (ct,) = [r for r in rows if r["modality"] == "CT"]
    assert ct["n_files"] == 4
    assert [p["code"] for p in ct["problems"]] == ["missing_slices"]
    assert "202.5, 1.25, 1.25" in ct["problems"][0]["detail"]


def test_scan_table_lists_every_series():
    proc = run("scan", str(pydicom_folder() / "98892003"))
    assert proc.returncode == 0, proc.stderr
    assert "non_parallel!" in proc.stdout and "localizer" in proc.stdout


def test_convert_writes_nifti_and_patient_free_sidecar(phantom, tmp_path):
    write_series(phantom(shape=(10, 12, 5)), tmp_path / "in", modality="MR", series_description="T1 axial")
    proc = run("convert", str(tmp_path / "in"), str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    (nii,) = (tmp_path / "out").glob("*.nii.gz")
    sidecar = (tmp_path / "out" / nii.name.replace(".nii.gz", ".json")).read_text()
    assert json.loads(sidecar)["Modality"] == "MR"
    for identifier in ("PHANTOM", "PatientName", "PatientID", "BirthDate"):
        assert identifier not in sidecar
    assert nib.load(nii).shape == (10, 12, 5)


def test_convert_refuses_unusable_series_with_exit_2(tmp_path):
    proc = run("convert", str(pydicom_folder() / "77654033" / "CT2"), str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "refused" in proc.stderr and "CT2" in proc.stderr and "Traceback" not in proc.stderr
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


@pytest.mark.parametrize(
    ("content", "match"), [(b"", "empty file"), (b"hello", "not a DICOM file")], ids=["empty", "text"]
)
def test_user_errors_are_one_line_on_stderr_exit_2(tmp_path, content, match):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(content)
    proc = run("scan", str(bad))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0] and str(bad) in lines[0]


def test_missing_path_is_a_user_error(tmp_path):
    proc = run("scan", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_demo_runs_end_to_end(tmp_path):
    proc = run("demo", "--out", str(tmp_path / "demo"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["converted"]
    ct = nib.load(tmp_path / "demo" / "eCT_Supplemental.nii.gz")
    assert ct.shape == (512, 512, 2) and np.asarray(ct.dataobj).min() == -1024
    assert summary["heldout_dice"] >= 0.9  # the brain-tissue task, segmented from its DICOM series
    assert nib.load(summary["heatmap"]).shape == nib.load(summary["mask"]).shape
    assert "data:image/png;base64," in Path(summary["review_html"]).read_text()
    mask = nib.load(summary["mask"])
    assert mask.shape == nib.load(tmp_path / "demo" / "MNI152Brain" / "imagesTs" / "MNI152Brain_008.nii.gz").shape
