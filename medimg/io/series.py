"""Grouping frames into series, and the per-series QA that ``medimg scan`` reports.

Files are grouped by Series Instance UID (0020,000E), then a UID is split when its images cannot form one
volume: different sizes (Rows/Columns), pixel spacings, orientations, echoes (0018,0086), localizer vs. image,
and -- only when that resolves duplicate positions -- acquisitions (0020,0012) or temporal positions.
Every split and every irregularity is written into the series' ``problems``; nothing is dropped silently.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medimg.io.dicom_header import FileHeader, Frame, decoder_problem
from medimg.io.geometry import Problem, StackGeometry, analyse_stack, same_orientation
from medimg.io.orientation import affine_axcodes, lps_to_ras_affine

__all__ = ["Series", "group_series"]


@dataclass
class Series:
    """One loadable unit: frames that share orientation, size and kind, with its QA verdict."""

    series_uid: str
    part: int | None
    frames: list[Frame]
    problems: list[Problem] = field(default_factory=list)
    geometry: StackGeometry | None = None

    @property
    def key(self) -> str:
        """The identifier ``--series`` accepts: the UID, with ``#N`` appended for the N-th part of a split UID."""
        return self.series_uid if self.part is None else f"{self.series_uid}#{self.part}"

    @property
    def header(self) -> FileHeader:
        return self.frames[0].header

    @property
    def modality(self) -> str:
        return self.header.modality

    @property
    def description(self) -> str:
        return self.header.description

    @property
    def files(self) -> list[str]:
        return sorted({f.path for f in self.frames})

    @property
    def localizer(self) -> bool:
        return any(p.code == "localizer" for p in self.problems)

    @property
    def loadable(self) -> bool:
        return not any(p.blocking for p in self.problems)

    @property
    def shape(self) -> tuple[int, int, int]:
        f = self.frames[0]
        return (f.columns, f.rows, len(self.frames))

    @property
    def spacing(self) -> tuple[float, float, float] | None:
        g = self.geometry
        if g is None:
            return None
        return (g.pixel_spacing[1], g.pixel_spacing[0], g.slice_step)

    @property
    def orientation(self) -> str | None:
        g = self.geometry
        return None if g is None else affine_axcodes(lps_to_ras_affine(g.affine_lps()))

    def summary(self) -> dict[str, Any]:
        """A JSON-ready, patient-free description: what ``medimg scan --json`` prints per series."""
        spacing = self.spacing
        return {
            "series_uid": self.series_uid,
            "key": self.key,
            "modality": self.modality,
            "description": self.description,
            "series_number": self.header.series_number,
            "n_files": len(self.files),
            "n_frames": len(self.frames),
            "shape": list(self.shape),
            "spacing": None if spacing is None else [round(s, 6) for s in spacing],
            "orientation": self.orientation,
            "transfer_syntax": self.header.transfer_syntax_name,
            "loadable": self.loadable,
            "problems": [p.as_dict() for p in self.problems],
        }


def _cluster_orientations(frames: list[Frame]) -> list[list[Frame]]:
    clusters: list[list[Frame]] = []
    for f in frames:
        for c in clusters:
            if c[0].iop is not None and f.iop is not None and same_orientation(c[0].iop, f.iop):
                c.append(f)
                break
            if c[0].iop is None and f.iop is None:
                c.append(f)
                break
        else:
            clusters.append([f])
    return clusters


def _split_duplicates(frames: list[Frame]) -> list[list[Frame]]:
    """Split a stack with duplicate positions by the first of acquisition / temporal / stack that resolves it."""
    if any(f.ipp is None or f.iop is None for f in frames) or _unique_positions(frames):
        return [frames]
    for attr in ("temporal", "stack", "acquisition"):
        values = {getattr(f, attr) for f in frames}
        if len(values) < 2 or None in values:
            continue
        parts: dict[Any, list[Frame]] = defaultdict(list)
        for f in frames:
            parts[getattr(f, attr)].append(f)
        if all(_unique_positions(p) for p in parts.values()):
            return [parts[k] for k in sorted(parts, key=_natural)]
    return [frames]


def _natural(value: Any) -> tuple[int, float | str]:
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value))


def _unique_positions(frames: list[Frame]) -> bool:
    iop = frames[0].iop
    assert iop is not None
    normal = np.cross(iop[:3], iop[3:])
    along = np.sort(np.array([np.dot(f.ipp, normal) for f in frames if f.ipp is not None]))
    return bool(np.all(np.diff(along) > 0.02))


def group_series(headers: list[FileHeader]) -> list[Series]:
    """Group file headers into :class:`Series`, split them where needed and run the geometry QA on each."""
    by_uid: dict[str, list[Frame]] = defaultdict(list)
    no_pixels: list[FileHeader] = []
    for h in headers:
        if h.is_dicomdir:
            continue
        if not h.has_pixels:
            no_pixels.append(h)
            continue
        by_uid[h.series_uid or f"no-uid:{h.path}"].extend(h.frames)

    result: list[Series] = []
    for uid, frames in by_uid.items():
        result.extend(_split_uid(uid, frames))
    objects: dict[str, list[Frame]] = defaultdict(list)
    for h in no_pixels:
        objects[h.series_uid].append(Frame(h, None, 0, 0, None, None, None, 1.0, 0.0))
    for uid, placeholders in objects.items():
        sop = placeholders[0].header.sop_class
        s = Series(uid, None, placeholders)
        s.problems.append(
            Problem("no_pixel_data", f"no image in these objects (SOP class {sop}; SR, RTSTRUCT, ...)", True)
        )
        result.append(s)
    result.sort(key=lambda s: (s.header.series_number or 0, s.series_uid, s.part or 0))
    return result


def _split_uid(uid: str, frames: list[Frame]) -> list[Series]:
    # 1) image vs localizer; 2) size and pixel spacing; 3) echo; 4) orientation; 5) duplicates -> acquisition...
    groups: dict[tuple[Any, ...], list[Frame]] = defaultdict(list)
    for f in frames:
        spacing = None if f.pixel_spacing is None else tuple(round(s, 4) for s in f.pixel_spacing)
        groups[(f.header.localizer, f.rows, f.columns, spacing, f.echo, f.header.samples_per_pixel)].append(f)
    reasons = []
    if len({k[1:3] for k in groups}) > 1:
        reasons.append("mixed_sizes")
    if len({k[3] for k in groups}) > 1:
        reasons.append("mixed_pixel_spacing")
    if len({k[4] for k in groups}) > 1:
        reasons.append("several_echoes")
    if len({k[0] for k in groups}) > 1:
        reasons.append("localizer_split")

    stacks: list[tuple[bool, list[Frame], list[Problem]]] = []
    for key, members in groups.items():
        localizer = key[0]
        clusters = _cluster_orientations(members)
        if len(clusters) > 1:
            if not localizer and all(len(c) == 1 for c in clusters) and len(clusters) >= 3:
                if _orthogonal_planes(clusters):
                    localizer = True  # a 3-plane localizer without the LOCALIZER image type
                else:
                    stacks.append((localizer, members, [_non_parallel(len(clusters))]))
                    continue
            reasons.append("several_orientations")
        for c in clusters:
            parts = _split_duplicates(c)
            if len(parts) > 1:
                reasons.append("several_acquisitions_or_phases")
            stacks.extend((localizer, part, []) for part in parts)

    split = len(stacks) > 1
    out: list[Series] = []
    for n, (localizer, members, problems) in enumerate(stacks, start=1):
        s = Series(uid, n if split else None, members, problems=problems)
        if split and reasons:
            s.problems.append(
                Problem(
                    "split",
                    f"series UID holds {len(stacks)} parts ({', '.join(sorted(set(reasons)))})",
                    False,
                )
            )
        if localizer:
            s.problems.append(Problem("localizer", "localizer/scout image(s), set aside from the volume", False))
        _check(s)
        out.append(s)
    return out


def _orthogonal_planes(clusters: list[list[Frame]]) -> bool:
    normals = [np.cross(c[0].iop[:3], c[0].iop[3:]) for c in clusters if c[0].iop is not None]
    if len(normals) != len(clusters) or len(normals) > 3:
        return False
    return all(abs(float(np.dot(a, b))) < 0.05 for i, a in enumerate(normals) for b in normals[i + 1 :])


def _non_parallel(n: int) -> Problem:
    return Problem(
        "non_parallel",
        f"{n} slices with {n} different orientations (radial or free-angle acquisition): not a 3D grid, refused",
        True,
    )


def _check(s: Series) -> None:
    """Run the geometry QA of one series and attach the results."""
    header = s.header
    ts_problem = decoder_problem(header.transfer_syntax)
    if ts_problem:
        s.problems.append(Problem("missing_decoder", ts_problem, True))
    if any(p.code == "non_parallel" for p in s.problems):
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
        s.problems.append(Problem("no_pixel_spacing", "Pixel Spacing (0028,0030) missing; assuming 1 mm", False))
        spacing = (1.0, 1.0)
    thickness = header.sidecar.get("SpacingBetweenSlices") or header.sidecar.get("SliceThickness")
    geometry = analyse_stack(
        first.iop,
        np.array([f.ipp for f in s.frames], dtype=float),
        spacing,
        float(thickness) if thickness else None,
    )
    s.geometry = geometry
    s.frames = [s.frames[i] for i in geometry.order]
    s.problems.extend(geometry.problems)
