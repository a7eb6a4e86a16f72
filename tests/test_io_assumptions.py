"""Geometry that is present but impossible is refused where patients have geometry; assumptions are said out loud."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from medimg.errors import SeriesGeometryError
from medimg.io import load, scan
from medimg.io.dicom.convert import convert
from medimg.io.dicom.write import write_series

BAD_GEOMETRY = [
    ({"PixelSpacing": ["0", "0"]}, r"Pixel Spacing \(0028,0030\) = \[0\.0, 0\.0\]"),
    ({"PixelSpacing": ["-0.7", "0.7"]}, r"Pixel Spacing \(0028,0030\) = \[-0\.7, 0\.7\]"),
    ({"PixelSpacing": ["nan", "0.7"]}, r"Pixel Spacing \(0028,0030\) = \[nan, 0\.7\]"),
    ({"ImagePositionPatient": ["inf", "0", "0"]}, r"Image Position \(Patient\) \(0020,0032\) = \[inf"),
    ({"ImageOrientationPatient": ["1", "0", "0", "1", "0", "0"]}, r"not two perpendicular unit vectors"),
]


@pytest.mark.parametrize("modality", ["CT", "MR"])
@pytest.mark.parametrize(("extra", "match"), BAD_GEOMETRY)
def test_impossible_geometry_on_ct_and_mr_is_refused(modality, extra, match, phantom, tmp_path):
    write_series(phantom(shape=(6, 5, 3)), tmp_path / "s", modality=modality, extra=extra)
    (series,) = scan(tmp_path / "s")
    assert not series.loadable
    with pytest.raises(SeriesGeometryError, match=match):
        load(tmp_path / "s")


def test_zero_spacing_on_a_modality_without_patient_geometry_is_assumed_and_said(phantom, tmp_path):
    write_series(phantom(shape=(6, 5, 1)), tmp_path / "sc", modality="OT", extra={"PixelSpacing": ["0", "0"]})
    volume = load(tmp_path / "sc")
    assert volume.spacing[:2] == (1.0, 1.0)
    (problem,) = [p for p in volume.meta["problems"] if p["code"] == "no_pixel_spacing"]
    assert "is not a spacing; assuming 1 mm" in problem["detail"]  # not "missing": it is there, and zero
    proc = subprocess.run(
        [sys.executable, "-m", "medimg", "convert", str(tmp_path / "sc"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "note " in proc.stdout and "assuming 1 mm" in proc.stdout
    (sidecar,) = (tmp_path / "out").glob("*.json")
    codes = [p["code"] for p in json.loads(sidecar.read_text())["Problems"]]
    assert "no_pixel_spacing" in codes


def test_convert_reports_a_corrected_tilt(tmp_path):
    positions = [[0.0, -2.0 * np.tan(np.radians(10)) * k, 2.0 * k] for k in range(5)]
    arr = np.arange(8 * 8 * 5, dtype=np.int16).reshape(8, 8, 5)
    from medimg.io import Volume

    write_series(Volume(arr, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "tilt", modality="CT", positions_lps=positions)
    report = convert(tmp_path / "tilt", tmp_path / "out")
    (notes,) = report.notes.values()
    assert any(n.startswith("gantry_tilt: slices are sheared by 10.00 degrees") for n in notes)
