"""The quick header reader and pydicom's reader must agree on every file medimg can be given."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from medimg.data.samples import pydicom_file
from medimg.errors import MedimgError
from medimg.io.dicom import header as dicom_header
from medimg.io.dicom import raw as dicom_raw
from medimg.io.dicom.write import write_series


def _sample_files() -> list[Path]:
    pydicom_dir = pydicom_file("CT_small.dcm").parent
    data_store = pydicom_file("eCT_Supplemental.dcm").parent
    files = [p for p in pydicom_dir.rglob("*") if p.is_file()] + [p for p in data_store.glob("*.dcm")]
    return sorted(files)


def _describe(path: Path, quick: bool, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setattr(dicom_raw, "QUICK_PARSE", quick)
    try:
        h = dicom_header.read_header(path)
    except MedimgError as exc:
        return type(exc).__name__
    fields = {f.name: getattr(h, f.name) for f in dataclasses.fields(h) if f.name != "frames"}
    frames = [{f.name: getattr(fr, f.name) for f in dataclasses.fields(fr) if f.name != "header"} for fr in h.frames]
    return fields, frames


def test_quick_and_pydicom_readers_agree_on_all_samples(monkeypatch):
    files = _sample_files()
    assert len(files) > 150
    used_quick = 0
    for path in files:
        quick = _describe(path, True, monkeypatch)
        slow = _describe(path, False, monkeypatch)
        assert quick == slow, path.name
        with path.open("rb") as fh:
            used_quick += dicom_raw.quick_parse(fh.read(1 << 16)) is not None
    assert used_quick > 20  # the quick path really ran on a good share of them


def test_quick_reader_agrees_on_written_series(phantom, tmp_path, monkeypatch):
    for p in write_series(phantom(shape=(8, 8, 3)), tmp_path, modality="CT", rescale=(1.0, -1024.0)):
        assert _describe(p, True, monkeypatch) == _describe(p, False, monkeypatch)
        assert dicom_raw.quick_parse(p.read_bytes()) is not None


REALDICOM = Path(__file__).resolve().parents[2] / "shared" / "realdicom"


@pytest.mark.skipif(not REALDICOM.is_dir(), reason=f"{REALDICOM} is absent (real scanner sample)")
def test_quick_reader_agrees_on_real_scanner_files_with_sequences_and_long_headers(monkeypatch):
    """Philips files carry undefined-length sequences and Toshiba's private header runs past 64 kB: the quick
    reader takes both now, and must still agree with pydicom on every attribute medimg keeps."""
    folders = sorted({p.parent for p in REALDICOM.rglob("*") if p.is_file() and p.suffix in ("", ".dcm")})
    used_quick = checked = 0
    for folder in folders:
        for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(("LICENSE", "README")))[
            :3
        ]:
            assert _describe(path, True, monkeypatch) == _describe(path, False, monkeypatch), path
            if not isinstance(_describe(path, True, monkeypatch), tuple):
                continue  # not DICOM (a LICENSE file): both readers refuse it alike
            if dicom_header.read_header(path).transfer_syntax != ExplicitVRLittleEndian:
                continue  # other transfer syntaxes are pydicom's by design
            checked += 1
            used_quick += dicom_raw.quick_parse(path.read_bytes()[: 1 << 20]) is not None
    assert checked >= 20 and used_quick == checked
