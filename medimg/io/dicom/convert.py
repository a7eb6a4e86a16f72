"""``medimg convert``: every usable series under a folder to NIfTI + a patient-free JSON sidecar.

A 4D series (diffusion, fMRI, DCE, cardiac phases) becomes one 4D NIfTI; a diffusion series also gets FSL's
``.bval``/``.bvec`` beside it, in dcm2niix's convention (see :func:`medimg.io.dicom.diffusion.fsl_bvecs`). With
``split_4d`` each volume is written as its own 3D file (``_vol0000`` ...) instead. Different echoes of one series are
written as separate files suffixed ``_e1``, ``_e2`` ..., as dcm2niix does.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg._version import __version__
from medimg.errors import MedimgError
from medimg.io.atomic import atomic_write_text
from medimg.io.dicom.scan import scan
from medimg.io.dicom.series import Series
from medimg.io.load import PhilipsScaling, UnevenPolicy, load_series
from medimg.io.volume import Volume

__all__ = ["ConversionReport", "convert", "sidecar"]


@dataclass
class ConversionReport:
    """What :func:`convert` wrote, and what it refused (series key -> reason)."""

    written: list[Path] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # set aside on purpose (localizers)
    notes: dict[str, list[str]] = field(default_factory=dict)  # series key -> non-blocking problems, said out loud

    @property
    def ok(self) -> bool:
        return not self.refused


#: File-name suffixes of the complex image components, as dcm2niix writes them (magnitude has none).
PART_SUFFIXES = {"phase": "_ph", "real": "_real", "imaginary": "_imaginary", "fieldmaphz": "_fieldmaphz"}


def _stem(series: Series) -> str:
    """``<Series Number>_<modality>_<description>`` and what sets this output apart within its series: the echo
    (``_e2``), the image part (``_ph``, ``_real``, ``_imaginary``, ``_fieldmaphz``), a derived diffusion image
    (``_ADC``), else the part number of a split series (``_part2``)."""
    desc = re.sub(r"[^A-Za-z0-9]+", "_", series.description).strip("_")[:40] or "series"
    number = series.header.series_number
    first = series.frames[0]
    suffix = ""
    several_echoes = any("several_echoes" in p.detail for p in series.problems)
    if series.part and first.echo is not None and several_echoes:
        suffix += f"_e{first.echo}"
    suffix += PART_SUFFIXES.get(first.part or "", "")
    if series.derived:
        suffix += "_ADC"
    if series.part and not suffix and _split_beyond_suffixes(series):
        suffix = f"_part{series.part}"
    return f"{number if number is not None else 0:03d}_{series.modality}_{desc}{suffix}"


#: Reasons for a split UID that the echo / image-part suffixes already name.
_NAMED_SPLITS = frozenset({"several_echoes", "image_parts"})


def _split_beyond_suffixes(series: Series) -> bool:
    """True when the series' UID was split for a reason its suffixes do not name (sizes, orientations,
    acquisitions): then its part number goes into the name."""
    for p in series.problems:
        if p.code == "split":
            reasons = set(re.findall(r"[a-z_]+", p.detail.partition("(")[2]))
            return not reasons <= _NAMED_SPLITS
    return False


def _unique(stem: str, used: set[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3`` ... when an earlier output took it (never a chain of suffixes)."""
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}_{n}"
    used.add(candidate)
    return candidate


def sidecar(series: Series, meta: dict[str, Any]) -> dict[str, Any]:
    """BIDS-like JSON for one converted series: acquisition parameters, never patient identifiers."""
    out: dict[str, Any] = dict(meta.get("dicom", {}))
    out.update(
        {
            "SeriesInstanceUID": series.series_uid,
            "SeriesKey": series.key,
            "TransferSyntax": meta.get("transfer_syntax"),
            "ValueUnit": meta.get("value_unit"),
            "WindowPresets": meta.get("window_presets"),
            "NumberOfSourceFiles": len(series.files),
            "SliceGapsMM": meta.get("slice_gaps_mm"),
            "Problems": meta.get("problems"),
            "ConversionSoftware": "medimg",
            "ConversionSoftwareVersion": __version__,
        }
    )
    for key in ("gantry_tilt_deg", "resampled", "value_scaling"):
        if key in meta:
            out[key] = meta[key]
    if "volumes" in meta:
        out["Volumes"] = meta["volumes"]
    return {k: v for k, v in out.items() if v is not None}


def convert(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    series: str | None = None,
    include_localizers: bool = False,
    uneven: UnevenPolicy = "error",
    split_4d: bool = False,
    philips_scaling: PhilipsScaling = "precise",
    compress: bool = True,
) -> ConversionReport:
    """Convert the DICOM series under ``source`` to ``out_dir/<number>_<modality>_<description>.nii.gz``.

    Each NIfTI gets a ``.json`` sidecar. Files are written atomically: a series that fails leaves nothing
    behind. Philips MR values are written as Philips' floating-point values unless ``philips_scaling="display"``
    (the rule is in the sidecar's ``value_scaling``). Series that cannot be volumes are listed in
    ``report.refused`` with the reason; non-blocking problems (an assumed spacing, a corrected tilt, a split UID)
    in ``report.notes`` and in the sidecar's ``Problems``. ``compress=False`` writes ``.nii`` (dcm2niix's
    ``-z n``: faster to write and to read back, larger on disk).
    """
    found = scan(source)
    chosen = [found.find(series)] if series else list(found.series)
    report = ConversionReport()
    out = Path(out_dir)
    used: set[str] = set()
    for s in chosen:
        if s.localizer and not include_localizers and series is None:
            report.skipped[s.key] = "localizer (use --include-localizers to convert it)"
            continue
        try:
            volume = load_series(s, uneven=uneven, philips_scaling=philips_scaling)
        except MedimgError as exc:
            report.refused[s.key] = exc.reason
            continue
        stem = _unique(_stem(s), used)
        notes = [f"{p['code']}: {p['detail']}" for p in volume.meta.get("problems", []) if p["code"] != "4d"]
        if notes:
            report.notes[s.key] = notes
        report.written.extend(_write(volume, s, out, stem, split_4d, ".nii.gz" if compress else ".nii"))
    if not chosen:
        report.refused[str(source)] = "no DICOM series found"
    return report


def _write(volume: Volume, series: Series, out: Path, stem: str, split_4d: bool, suffix: str = ".nii.gz") -> list[Path]:
    """Write one converted series: NIfTI (+ ``.bval``/``.bvec`` for diffusion) and the JSON sidecar."""
    meta = dict(volume.meta)
    if volume.array.ndim == 4 and split_4d:
        written = []
        for t in range(volume.array.shape[3]):
            one = Volume(volume.array[:, :, :, t], volume.affine, {**meta, "volumes": [meta["volumes"][t]]})
            written.append(one.save(out / f"{stem}_vol{t:04d}{suffix}"))
            atomic_write_text(out / f"{stem}_vol{t:04d}.json", _sidecar_text(series, dict(one.meta)))
        return written
    target = volume.save(out / f"{stem}{suffix}")
    atomic_write_text(out / f"{stem}.json", _sidecar_text(series, meta))
    entries = meta.get("volumes") or []
    if entries and all("b_value" in e for e in entries) and any(e["b_value"] > 0 for e in entries):
        atomic_write_text(out / f"{stem}.bval", " ".join(f"{e['b_value']:g}" for e in entries) + "\n")
        rows = [" ".join(_bvec_number(e["gradient"][axis]) for e in entries) for axis in range(3)]
        atomic_write_text(out / f"{stem}.bvec", "\n".join(rows) + "\n")
    return [target]


def _bvec_number(value: float) -> str:
    """A .bvec entry as dcm2niix prints it (``0`` for zero, else up to 6 significant digits)."""
    return "0" if abs(value) < 5e-7 else f"{value:.6g}"


def _sidecar_text(series: Series, meta: dict[str, Any]) -> str:
    return json.dumps(sidecar(series, meta), indent=2, default=_json)


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
