"""The geometry and encoding QA of one grouped series: what ``medimg scan`` reports per series.

A decoder for the transfer syntax, possible geometry values on modalities that always have one, patient geometry
on every frame, Pixel Spacing, then the stack analysis (:func:`medimg.io.dicom.geometry.analyse_stack`: order along the
normal, gaps, tilt) and, for a 4D series, every volume in the first one's slice order with a word on its
diffusion encoding. Problems are attached to the series; nothing here reads pixels.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from medimg.io.dicom.geometry import Problem, StackGeometry, analyse_stack
from medimg.io.dicom.header import PATIENT_GEOMETRY_MODALITIES
from medimg.io.dicom.pixels import decoder_problem
from medimg.io.dicom.volume_split import along

if TYPE_CHECKING:
    from medimg.io.dicom.series import Series

__all__ = ["check_series"]

_DIFFUSION_WORDS = re.compile(r"(?<![a-z])(dwi|dti|diff|adc|trace)", re.IGNORECASE)


def check_series(s: Series) -> None:
    """Run the geometry QA of one series and attach the results."""
    header = s.header
    ts_problem = decoder_problem(header.transfer_syntax)
    if ts_problem:
        s.problems.append(Problem("missing_decoder", ts_problem, True))
    if any(p.code in {"non_parallel", "incomplete_4d"} for p in s.problems):
        return
    invalid = sorted({issue for f in s.frames for issue in f.header.invalid_geometry})
    if invalid and s.modality in PATIENT_GEOMETRY_MODALITIES:
        s.problems.append(
            Problem(
                "invalid_geometry",
                f"impossible geometry value(s) on a {s.modality} image: {'; '.join(invalid[:3])}; refused (fix the "
                "export: medimg will not assume a geometry for a modality that always has one)",
                True,
            )
        )
        return
    first = s.frames[0]
    if first.iop is None or first.ipp is None or any(f.ipp is None for f in s.frames):
        if len(s.frames) > 1:
            s.problems.append(
                Problem(
                    "no_geometry",
                    "frames carry no Image Position/Orientation (Patient) (0020,0032)/(0020,0037); their order "
                    "in space is unknown, refused as a volume",
                    True,
                )
            )
        else:
            s.problems.append(
                Problem(
                    "no_geometry",
                    "2D image without patient geometry; loaded with an identity orientation",
                    False,
                )
            )
        return
    spacing = first.pixel_spacing
    if spacing is None:
        said = f"{invalid[0]} is not a spacing" if invalid else "Pixel Spacing (0028,0030) missing"
        s.problems.append(Problem("no_pixel_spacing", f"{said}; assuming 1 mm", False))
        spacing = (1.0, 1.0)
    thickness = _slice_thickness(header.sidecar)
    geometry = analyse_stack(
        first.iop,
        np.array([f.ipp for f in s.frames], dtype=float),
        spacing,
        thickness,
    )
    s.geometry = geometry
    s.frames = [s.frames[i] for i in geometry.order]
    s.problems.extend(geometry.problems)
    if s.volumes is not None:
        _order_volumes(s, geometry)


def _slice_thickness(sidecar: dict[str, Any]) -> float | None:
    """Spacing Between Slices (0018,0088), else Slice Thickness (0018,0050): a positive finite number, or None
    (a damaged decimal string is ignored here; only a single slice uses it, and says so when it is missing)."""
    for key in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = float(sidecar.get(key) or 0)
        except (TypeError, ValueError):
            continue
        if np.isfinite(value) and value > 0:
            return value
    return None


def _order_volumes(s: Series, geometry: StackGeometry) -> None:
    """Put every volume of a 4D series in the slice order of the first and describe the 4th axis."""
    assert s.volumes is not None
    ordered = []
    for volume in s.volumes:
        along_normal = along(volume, geometry.normal)  # every frame of a checked stack has a position
        ordered.append([volume[i] for i in np.argsort(along_normal, kind="stable")])
    s.volumes = ordered
    s.frames = ordered[0]
    b = s.b_values
    what = f" (b {', '.join(f'{v:g}' for v in b)})" if b else ""
    s.problems.append(Problem("4d", f"4D: {len(ordered)} volumes{what}", False))
    looks_diffusion = "DIFFUSION" in s.header.image_type or _DIFFUSION_WORDS.search(s.description)
    if looks_diffusion and any(v[0].diffusion is None for v in ordered):
        s.problems.append(
            Problem(
                "no_diffusion_encoding",
                f"looks diffusion-weighted ({s.header.sidecar.get('Manufacturer', 'unknown vendor')}) but some volumes "
                "carry no standard (0018,9087)/(0018,9089) or Siemens b-value: no .bval/.bvec is written (GE and "
                "Philips private diffusion tags are not read)",
                False,
            )
        )
