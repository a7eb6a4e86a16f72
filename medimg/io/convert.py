"""``medimg convert``: every usable series under a folder to NIfTI + a patient-free JSON sidecar."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg import __version__
from medimg.errors import MedimgError
from medimg.io.atomic import atomic_write_text
from medimg.io.load import UnevenPolicy, load_series
from medimg.io.scan import scan
from medimg.io.series import Series

__all__ = ["ConversionReport", "convert", "sidecar"]


@dataclass
class ConversionReport:
    """What :func:`convert` wrote, and what it refused (series key -> reason)."""

    written: list[Path] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # set aside on purpose (localizers)

    @property
    def ok(self) -> bool:
        return not self.refused


def _stem(series: Series) -> str:
    desc = re.sub(r"[^A-Za-z0-9]+", "_", series.description).strip("_")[:40] or "series"
    number = series.header.series_number
    part = f"_part{series.part}" if series.part else ""
    return f"{number if number is not None else 0:03d}_{series.modality}_{desc}{part}"


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
    for key in ("gantry_tilt_deg", "resampled"):
        if key in meta:
            out[key] = meta[key]
    return {k: v for k, v in out.items() if v is not None}


def convert(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    series: str | None = None,
    include_localizers: bool = False,
    uneven: UnevenPolicy = "error",
) -> ConversionReport:
    """Convert the DICOM series under ``source`` to ``out_dir/<number>_<modality>_<description>.nii.gz``.

    Each NIfTI gets a ``.json`` sidecar. Files are written atomically: a series that fails leaves nothing
    behind. Series that cannot be volumes are listed in ``report.refused`` with the reason.
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
            volume = load_series(s, uneven=uneven)
        except MedimgError as exc:
            report.refused[s.key] = exc.reason
            continue
        stem = _stem(s)
        while stem in used:
            stem += "_b"
        used.add(stem)
        target = out / f"{stem}.nii.gz"
        volume.save(target)
        atomic_write_text(out / f"{stem}.json", json.dumps(sidecar(s, dict(volume.meta)), indent=2, default=_json))
        report.written.append(target)
    if not chosen:
        report.refused[str(source)] = "no DICOM series found"
    return report


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
