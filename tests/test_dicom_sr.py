"""The TID 1500 measurement report medimg writes per SEG: values held against numpy on the original volume, read
back by highdicom and by dcmqi's ``tid1500reader`` (DCMTK-based), and ``dciodvfy``-clean (Debian dicom3tools)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from debian_support import apt_install
from pydicom.sr.codedict import codes

from medimg.io import Volume, load
from medimg.io.derived import write_seg
from medimg.io.derived.sr import write_measurement_report
from medimg.io.dicom.write import write_series

SHAPE = (16, 12, 6)
SPACING = (0.7, 0.8, 2.5)
EXTRA = {"PatientID": "MRN8675309", "PatientName": "DOE^JANE", "AccessionNumber": "ACC42", "StudyDate": "20260101",
         "StudyTime": "120000", "StudyID": "1", "PatientBirthDate": "19700101", "PatientSex": "F",
         "ReferringPhysicianName": ""}  # fmt: skip
TID1500READER = Path(shutil.which("tid1500reader") or Path(__file__).parents[1] / ".venv" / "bin" / "tid1500reader")


@pytest.fixture
def seg_and_sr(tmp_path):
    hu = np.random.default_rng(5).integers(-1000, 1500, size=SHAPE).astype(np.int16)
    ct = Volume(hu, np.diag([*SPACING, 1.0]))
    write_series(ct, tmp_path / "ct", modality="CT", rescale=(1.0, -1024.0), extra=EXTRA)
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[2:9, 3:8, 1:4] = 1
    mask[10:14, 1:5, 2:6] = 2
    seg = write_seg(Volume(mask, load(tmp_path / "ct").affine), tmp_path / "ct", tmp_path / "seg.dcm",
                    labels={1: "liver", 2: "spleen", 3: "my lesion"})  # fmt: skip
    sr, stats = write_measurement_report(seg, tmp_path / "ct", tmp_path / "sr.dcm")
    return {"hu": hu, "mask": mask, "seg": seg, "sr": sr, "stats": stats, "ct": tmp_path / "ct"}


def _expected(hu: np.ndarray, mask: np.ndarray, label: int) -> tuple[float, float | None, float | None]:
    values = hu[mask == label].astype(float)
    ml = values.size * float(np.prod(SPACING)) / 1000.0
    return (ml, float(values.mean()), float(values.std())) if values.size else (ml, None, None)


def test_sr_holds_volume_mean_sd_per_segment_and_highdicom_reads_them(seg_and_sr):
    sr = hd.sr.srread(seg_and_sr["sr"])
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 3  # every segment of the SEG, the empty one included
    for label, group in zip((1, 2, 3), groups, strict=True):
        ml, mean, sd = _expected(seg_and_sr["hu"], seg_and_sr["mask"], label)
        volume = group.get_measurements(name=codes.SCT.Volume)[0]
        assert volume.value == pytest.approx(ml, abs=1e-6) and volume.unit.value == "mL"
        means = group.get_measurements(name=codes.SCT.Mean)
        if mean is None:
            assert not means
            continue
        assert means[0].value == pytest.approx(mean, abs=1e-5) and means[0].unit.value == "[hnsf'U]"
        sds = group.get_measurements(name=codes.SCT.StandardDeviation)
        assert sds[0].value == pytest.approx(sd, abs=1e-5)
        assert group.referenced_segment.referenced_segment_numbers == [label]
    seg = pydicom.dcmread(seg_and_sr["seg"], stop_before_pixels=True)
    ds = pydicom.dcmread(seg_and_sr["sr"])
    assert ds.StudyInstanceUID == seg.StudyInstanceUID and ds.PatientID == seg.PatientID
    evidence = {s.SeriesInstanceUID: {i.ReferencedSOPInstanceUID for i in s.ReferencedSOPSequence}
                for e in ds.CurrentRequestedProcedureEvidenceSequence for s in e.ReferencedSeriesSequence}  # fmt: skip
    source_series = pydicom.dcmread(next(seg_and_sr["ct"].iterdir())).SeriesInstanceUID
    assert seg.SOPInstanceUID in evidence[seg.SeriesInstanceUID] and len(evidence[source_series]) == SHAPE[2]


def test_sr_is_read_by_dcmqi_tid1500reader(seg_and_sr, tmp_path):
    if not TID1500READER.exists():
        pytest.skip("dcmqi's tid1500reader is not installed (pip dcmqi, pinned in requirements-dev.txt)")
    out = tmp_path / "sr.json"
    proc = subprocess.run([str(TID1500READER), "--inputDICOM", str(seg_and_sr["sr"]), "--outputMetadata", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    meta = json.loads(out.read_text())
    items = meta["Measurements"]
    assert len(items) == 3
    ml, mean, _ = _expected(seg_and_sr["hu"], seg_and_sr["mask"], 1)
    values = {m["quantity"]["CodeMeaning"]: float(m["value"]) for m in items[0]["measurementItems"]}
    assert values["Volume"] == pytest.approx(ml, abs=1e-6) and values["Mean"] == pytest.approx(mean, abs=1e-5)


def test_sr_is_dciodvfy_clean(seg_and_sr):
    why = apt_install(["dicom3tools"], lambda: shutil.which("dciodvfy") is not None)
    if why:
        pytest.skip(why)
    proc = subprocess.run(["dciodvfy", str(seg_and_sr["sr"])], capture_output=True, text=True, check=False, timeout=120)
    lines = (proc.stdout + proc.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    print("\n".join(line for line in lines if line.startswith("Warning")))
    assert not errors, "\n".join(errors)
