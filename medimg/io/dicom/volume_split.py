"""Telling the volumes of one series apart: the rules that turn a stack with repeated slice positions into the
volumes of a 4D series (diffusion directions, fMRI time points, DCE/perfusion phases, cardiac phases).

What the files say decides, standard attributes first (:data:`VOLUME_ATTRIBUTES`, the first that resolves every
duplicate wins): Temporal Position Identifier (0020,0100), the enhanced Stack ID, Acquisition Number (0020,0012),
the diffusion encoding (b-value and gradient, standard or vendor), Trigger Time (0018,1060), Acquisition Time
(0008,0032), and for Siemens mosaics the file. Where a vendor writes none of these but says how many slices a
volume has (GE (0021,104F) Locations in Acquisition, Images in Acquisition (0020,1002)), the volumes are chunks of
that many slices in Instance Number (0020,0013) order, as dcm2niix reads them. Anything else is left as it is,
and the series QA refuses the duplicate positions by name.

Inside a diffusion series two more rules hold (dcm2niix's, from the vendors' notes): a volume the scanner
derived (isotropic/trace/ADC: Image Type, Philips (2001,1004) ``I``, or b > 0 with no direction beside directed
volumes) is taken out of the 4D (:func:`separate_derived`), and a volume with no encoding among encoded ones
is b=0 (Canon/Toshiba write the standard attributes only where a gradient is applied: :func:`assume_b0`).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from medimg.io.dicom.diffusion import Diffusion
from medimg.io.dicom.geometry import GAP_ABS_TOL, Problem
from medimg.io.dicom.header import Frame

__all__ = [
    "VOLUME_ATTRIBUTES",
    "Split",
    "along",
    "assume_b0",
    "incomplete_volumes",
    "normal",
    "same_positions",
    "separate_derived",
    "split_duplicates",
]

#: Frame attributes that can tell the volumes of one series apart, tried in this order (see :class:`Frame`).
VOLUME_ATTRIBUTES = ("temporal", "stack", "acquisition", "diffusion_key", "trigger", "acquisition_time", "path")

#: How the assumed b=0 volumes are marked (``Diffusion.source``).
ASSUMED_B0 = "assumed b=0: no diffusion attributes beside encoded volumes (Canon/Toshiba convention)"


class Split(NamedTuple):
    """The volumes a stack was split into, and what told them apart (None: not split)."""

    parts: list[list[Frame]]
    by: str | None


def _volume_value(f: Frame, attr: str, encoded: bool) -> Any:
    if attr == "diffusion_key":
        if f.diffusion is None:
            return (0.0, None) if encoded else None  # a b=0 volume of Canon/Toshiba carries no encoding
        return f.diffusion.key
    if attr == "path":  # one mosaic file is one volume
        return f.path if f.header.mosaic is not None else None
    return getattr(f, attr)


def split_duplicates(frames: list[Frame]) -> Split:
    """Split a stack with duplicate positions by the first rule that resolves it (see the module docstring).

    The parts come in acquisition order (Instance Number (0020,0013), then frame number, then the attribute).
    """
    if any(f.ipp is None or f.iop is None for f in frames) or _unique_positions(frames):
        return Split([frames], None)
    encoded = any(f.diffusion is not None for f in frames)
    for attr in VOLUME_ATTRIBUTES:
        values = {_volume_value(f, attr, encoded) for f in frames}
        if len(values) < 2 or None in values:
            continue
        parts: dict[Any, list[Frame]] = defaultdict(list)
        for f in frames:
            parts[_volume_value(f, attr, encoded)].append(f)
        if all(_unique_positions(p) for p in parts.values()):
            ordered = sorted(parts.values(), key=lambda p: _acquisition_order(p, attr, encoded))
            return Split(ordered, attr)
    by_instance = _split_by_instance(frames)
    if by_instance is not None:
        return Split(by_instance, "instance")
    return Split([frames], None)


def _split_by_instance(frames: list[Frame]) -> list[list[Frame]] | None:
    """Chunks of the stated slices-per-volume in Instance Number order, when every chunk is one whole volume."""
    n = frames[0].header.slices_per_volume
    instances = [f.instance for f in frames]
    if n is None or n < 2 or len(frames) % n or len(frames) == n or None in instances:
        return None
    if len(set(instances)) != len(frames) or any(f.header.slices_per_volume != n for f in frames):
        return None
    ordered = sorted(frames, key=lambda f: f.instance or 0)
    chunks = [ordered[i : i + n] for i in range(0, len(ordered), n)]
    return chunks if all(_unique_positions(c) for c in chunks) else None


def _acquisition_order(part: list[Frame], attr: str, encoded: bool) -> tuple[Any, ...]:
    instances = [f.instance for f in part if f.instance is not None]
    indices = [f.index for f in part if f.index is not None and f.header.mosaic is None]
    value = _volume_value(part[0], attr, encoded)
    return (
        min(instances) if instances else 0,
        min(indices) if indices else 0,
        _natural(value if attr != "diffusion_key" else value[0]),
    )


def separate_derived(parts: list[list[Frame]]) -> tuple[list[list[Frame]], list[list[Frame]]]:
    """(acquired volumes, derived volumes) of a diffusion series.

    A volume is derived when one of its frames is marked so (Image Type ADC/TRACEW/..., Philips ``I``), or when
    it has b > 0 but no direction while other b > 0 volumes have one (Philips' isotropic image, GE's and
    Siemens' trace in a DWI series). Only a series with some acquired volumes is separated.
    """

    def directed(p: list[Frame]) -> bool:
        d = p[0].diffusion
        return d is not None and d.b_value > 0 and d.gradient is not None

    any_directed = any(directed(p) for p in parts)

    def derived(p: list[Frame]) -> bool:
        if any(f.derived_diffusion for f in p):
            return True
        d = p[0].diffusion
        return any_directed and d is not None and d.b_value > 0 and d.gradient is None

    acquired = [p for p in parts if not derived(p)]
    if not acquired or len(acquired) == len(parts):
        return parts, []
    return acquired, [p for p in parts if derived(p)]


def assume_b0(parts: list[list[Frame]]) -> tuple[list[list[Frame]], int]:
    """Give the volumes without a diffusion encoding b=0 when other volumes of the series have one; how many."""
    if not any(p[0].diffusion is not None for p in parts) or all(p[0].diffusion is not None for p in parts):
        return parts, 0
    b0 = Diffusion(0.0, None, ASSUMED_B0)
    out = [[dataclasses.replace(f, diffusion=b0) if f.diffusion is None else f for f in p] for p in parts]
    return out, sum(p[0].diffusion is None for p in parts)


def same_positions(parts: list[list[Frame]]) -> bool | None:
    """True if every part covers the same slice positions, None if they overlap but some lack slices, else False."""
    n = normal(parts[0])
    sets = [np.sort(along(p, n)) for p in parts]
    if all(len(a) == len(sets[0]) and np.allclose(a, sets[0], atol=GAP_ABS_TOL) for a in sets):
        return True
    union = np.unique(np.round(np.concatenate(sets) / GAP_ABS_TOL))
    if all(np.isin(np.round(a / GAP_ABS_TOL), union).all() for a in sets) and max(map(len, sets)) == len(union):
        return None
    return False


def incomplete_volumes(parts: list[list[Frame]]) -> Problem:
    full = max(map(len, parts))
    short = [(t, p) for t, p in enumerate(parts) if len(p) < full]
    t, p = short[0]
    return Problem(
        "incomplete_4d",
        f"4D series of {len(parts)} volumes of {full} slices, but volume {t + 1} has {len(p)} (first file "
        f"{sorted(f.path for f in p)[0]}); {len(short)} volume(s) incomplete, refused",
        True,
    )


def _natural(value: Any) -> tuple[int, float | str]:
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value))


def normal(frames: list[Frame]) -> npt.NDArray[np.float64]:
    """The slice normal (row x column direction, not normalised) of the first frame's orientation."""
    iop = frames[0].iop
    assert iop is not None
    return np.cross(iop[:3], iop[3:])


def along(frames: list[Frame], direction: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each positioned frame's Image Position (Patient) projected on ``direction`` (mm), in frame order."""
    return np.array([np.dot(f.ipp, direction) for f in frames if f.ipp is not None], dtype=float)


def _unique_positions(frames: list[Frame]) -> bool:
    return bool(np.all(np.diff(np.sort(along(frames, normal(frames)))) > GAP_ABS_TOL))
