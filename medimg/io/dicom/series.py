"""Grouping frames into series, and the per-series QA that ``medimg scan`` reports.

Files are grouped by Series Instance UID (0020,000E), then a UID is split when its images cannot form one
volume: different sizes (Rows/Columns), pixel spacings, orientations, echoes (0018,0086), localizer vs. image,
and -- only when that resolves duplicate positions -- acquisitions (0020,0012) or temporal positions.
Every split and every irregularity is written into the series' ``problems``; nothing is dropped silently.

Parts of one UID that were split only to resolve duplicate positions, and that cover *the same slice positions*,
are the volumes of one 4D series (diffusion directions, fMRI time points, DCE/perfusion phases, cardiac phases):
they become one :class:`Series` whose ``volumes`` hold each volume's frames. Different echoes stay separate series
(one per echo, as dcm2niix's ``_e1``/``_e2``). Volumes whose slice positions differ are never stacked.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from pydicom.uid import ParametricMapStorage, SegmentationStorage

from medimg.io.dicom.geometry import Problem, StackGeometry, same_orientation
from medimg.io.dicom.header import FileHeader, Frame
from medimg.io.dicom.series_qa import check_series
from medimg.io.dicom.sites import propose_site
from medimg.io.dicom.volume_split import (
    assume_b0,
    incomplete_volumes,
    same_positions,
    separate_derived,
    split_duplicates,
)
from medimg.io.orientation import affine_axcodes, lps_to_ras_affine

__all__ = ["Series", "group_series"]


@dataclass
class Series:
    """One loadable unit: frames that share orientation, size and kind, with its QA verdict."""

    series_uid: str
    part: int | None
    frames: list[Frame]  # the (first) volume's frames, in slice order once checked
    problems: list[Problem] = field(default_factory=list)
    geometry: StackGeometry | None = None
    volumes: list[list[Frame]] | None = None  # a 4D series: every volume's frames, each in slice order
    derived: bool = False  # an isotropic/trace/ADC volume taken out of a diffusion series (written as _ADC)

    @property
    def key(self) -> str:
        """The identifier ``--series`` accepts: the UID, with ``#N`` appended for the N-th part of a split UID."""
        uid = self.series_uid or "no-uid"
        return uid if self.part is None else f"{uid}#{self.part}"

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
        frames = self.frames if self.volumes is None else [f for v in self.volumes for f in v]
        return sorted({f.path for f in frames})

    @property
    def n_volumes(self) -> int:
        """Number of volumes along the 4th axis (1 for a 3D series)."""
        return 1 if self.volumes is None else len(self.volumes)

    @property
    def b_values(self) -> list[float]:
        """The distinct diffusion b-values (s/mm^2) of the volumes, sorted; empty when not diffusion-weighted."""
        volumes = self.volumes or [self.frames]
        return sorted({v[0].diffusion.b_value for v in volumes if v[0].diffusion is not None})

    @property
    def localizer(self) -> bool:
        return any(p.code == "localizer" for p in self.problems)

    @property
    def loadable(self) -> bool:
        return not any(p.blocking for p in self.problems)

    @property
    def shape(self) -> tuple[int, ...]:
        """(i, j, k) voxels, with the number of volumes appended for a 4D series."""
        f = self.frames[0]
        shape = (f.columns, f.rows, len(self.frames))
        return shape if self.volumes is None else (*shape, len(self.volumes))

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
            "volumes": self.n_volumes,
            "b_values": self.b_values,
            "site": propose_site(self.header.sidecar),
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


#: Segmentation Storage, Label Map Segmentation Storage (not yet named in pydicom), Parametric Map Storage
#: (PS3.4 B.5).
SEGMENTATION_STORAGE = str(SegmentationStorage)
LABELMAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"
PARAMETRIC_MAP_STORAGE = str(ParametricMapStorage)
#: Objects that carry pixels but are not images of the patient, by SOP class, with their kind. ``medimg scan``
#: lists them apart (:mod:`medimg.io.dicom.derived_listing`) and ``medimg.load`` reads them with their own readers.
DERIVED_SOP_CLASSES = {SEGMENTATION_STORAGE: "SEG", LABELMAP_SEGMENTATION_STORAGE: "SEG", PARAMETRIC_MAP_STORAGE: "PM"}


def group_series(headers: list[FileHeader]) -> list[Series]:
    """Group file headers into :class:`Series`, split them where needed and run the geometry QA on each.

    Files are grouped by Series Instance UID (0020,000E) and Series Number (0020,0011) (one UID written with
    several series numbers is several series, as dcm2niix reads it). Files whose UID is missing (an anonymiser
    blanked it) are grouped the way dcm2niix does, by Study Instance UID, Series Number, Frame of Reference UID
    (0020,0052) and modality, then split by size, spacing and orientation like any series: one scan stays one
    volume. DICOM SEG and Parametric Map objects (:data:`DERIVED_SOP_CLASSES`) are not image series and are left
    out.
    """
    groups: dict[tuple[str, ...], list[Frame]] = defaultdict(list)
    no_pixels: list[FileHeader] = []
    for h in headers:
        if h.is_dicomdir or h.sop_class in DERIVED_SOP_CLASSES:
            continue
        if not h.has_pixels:
            no_pixels.append(h)
            continue
        groups[_grouping_key(h)].extend(h.frames)

    result: list[Series] = []
    numbers_per_uid: dict[str, set[str]] = defaultdict(set)
    for key in groups:
        numbers_per_uid[key[0]].add(key[1])
    for key, frames in groups.items():
        parts = _split_uid(key[0], frames)
        if not key[0]:
            for s in parts:
                s.problems.append(NO_UID_PROBLEM)
        elif len(numbers_per_uid[key[0]]) > 1:
            for s in parts:
                s.problems.append(_number_split(len(numbers_per_uid[key[0]])))
        result.extend(parts)
    result.extend(_objects_without_pixels(no_pixels))
    result.sort(key=lambda s: (s.header.series_number or 0, s.series_uid, s.part or 0))
    _unique_parts(result)
    return result


#: What ``scan`` says of files grouped without a Series Instance UID.
NO_UID_PROBLEM = Problem(
    "no_series_uid",
    "Series Instance UID (0020,000E) missing (anonymised export?): files grouped by Study UID, Series Number, "
    "Frame of Reference, modality, size, spacing and orientation",
    False,
)


def _grouping_key(h: FileHeader) -> tuple[str, ...]:
    """(UID, Series Number) for a file with a UID; ("", Series Number, Study UID, Frame of Reference, modality)
    for one without (the first item is the Series UID the resulting series carries)."""
    number = "" if h.series_number is None else str(h.series_number)
    if h.series_uid:
        return (h.series_uid, number)
    return ("", number, h.study_uid, h.frame_of_reference, h.modality)


def _number_split(n: int) -> Problem:
    return Problem(
        "series_number_split", f"series UID written with {n} Series Numbers (0020,0011): one series per number", False
    )


def _unique_parts(series: list[Series]) -> None:
    """Number the parts of one UID 1..n across its series numbers (and across UID-less groups) so keys stay
    unique; a UID that is one series keeps no part number."""
    by_uid: dict[str, list[Series]] = defaultdict(list)
    for s in series:
        by_uid[s.series_uid].append(s)
    for members in by_uid.values():
        if len(members) > 1 and len({s.part for s in members}) < len(members):
            for n, s in enumerate(members, start=1):
                s.part = n


def _objects_without_pixels(no_pixels: list[FileHeader]) -> list[Series]:
    objects: dict[str, list[Frame]] = defaultdict(list)
    for h in no_pixels:
        placeholder = Frame(
            header=h, index=None, rows=0, columns=0, iop=None, ipp=None, pixel_spacing=None, slope=1.0, intercept=0.0
        )
        objects[h.series_uid].append(placeholder)
    out = []
    for uid, placeholders in objects.items():
        sop = placeholders[0].header.sop_class
        s = Series(uid, None, placeholders)
        s.problems.append(
            Problem("no_pixel_data", f"no image in these objects (SOP class {sop}; SR, RTSTRUCT, ...)", True)
        )
        out.append(s)
    return out


class FrameGroup(NamedTuple):
    """What frames of one Series Instance UID must share to be one volume (the first split of a UID)."""

    localizer: bool
    rows: int
    columns: int
    pixel_spacing: tuple[float, ...] | None  # rounded to 1e-4 mm
    echo: str | None
    samples_per_pixel: int
    part: str | None  # complex image component (None: magnitude), see medimg.io.dicom.header.image_part

    @classmethod
    def of(cls, f: Frame) -> FrameGroup:
        spacing = None if f.pixel_spacing is None else tuple(round(s, 4) for s in f.pixel_spacing)
        return cls(f.header.localizer, f.rows, f.columns, spacing, f.echo, f.header.samples_per_pixel, f.part)


class _Stack(NamedTuple):
    """One future :class:`Series` of a split UID."""

    localizer: bool
    frames: list[Frame]
    problems: list[Problem]
    volumes: list[list[Frame]] | None = None
    derived: bool = False


def _split_uid(uid: str, frames: list[Frame]) -> list[Series]:
    # 1) image vs localizer; 2) size and pixel spacing; 3) echo; 4) orientation; 5) duplicates -> acquisition...
    groups: dict[FrameGroup, list[Frame]] = defaultdict(list)
    for f in frames:
        groups[FrameGroup.of(f)].append(f)
    reasons = []
    if len({(k.rows, k.columns) for k in groups}) > 1:
        reasons.append("mixed_sizes")
    if len({k.pixel_spacing for k in groups}) > 1:
        reasons.append("mixed_pixel_spacing")
    if len({k.echo for k in groups}) > 1:
        reasons.append("several_echoes")
    if len({k.localizer for k in groups}) > 1:
        reasons.append("localizer_split")
    if len({k.part for k in groups}) > 1:
        reasons.append("image_parts")

    stacks: list[_Stack] = []
    for key, members in groups.items():
        localizer = key.localizer
        clusters = _cluster_orientations(members)
        if len(clusters) > 1:
            if not localizer and all(len(c) == 1 for c in clusters) and len(clusters) >= 3:
                if _orthogonal_planes(clusters):
                    localizer = True  # a 3-plane localizer without the LOCALIZER image type
                else:
                    stacks.append(_Stack(localizer, members, [_non_parallel(len(clusters))]))
                    continue
            reasons.append("several_orientations")
        for c in clusters:
            stacks.extend(_volumes_of(localizer, c, reasons))

    split = len(stacks) > 1
    out: list[Series] = []
    for n, (localizer, members, problems, volumes, derived) in enumerate(stacks, start=1):
        s = Series(uid, n if split else None, members, problems=problems, volumes=volumes, derived=derived)
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
        check_series(s)
        out.append(s)
    return out


def _volumes_of(localizer: bool, frames: list[Frame], reasons: list[str]) -> list[_Stack]:
    """One orientation cluster as stacks: one 3D stack, the volumes of a 4D series (with any derived diffusion
    volumes apart), or several 3D stacks whose positions differ (see :mod:`medimg.io.dicom.volume_split`)."""
    parts, by = split_duplicates(frames)
    if len(parts) < 2:
        return [_Stack(localizer, parts[0], [])]
    parts, derived = separate_derived(parts)
    parts, n_b0 = assume_b0(parts)
    stacks = [_Stack(localizer, d, [_derived_problem()], None, True) for d in derived]
    notes = []
    if by == "instance":
        notes.append(_by_instance_problem(len(parts[0])))
    if n_b0:
        notes.append(_assumed_b0_problem(n_b0))
    if len(parts) == 1:
        return [_Stack(localizer, parts[0], notes), *stacks]
    same = same_positions(parts)
    if same is True:
        return [_Stack(localizer, parts[0], notes, parts), *stacks]
    if same is None:
        return [_Stack(localizer, parts[0], [incomplete_volumes(parts), *notes], parts), *stacks]
    reasons.append("several_acquisitions_or_phases")
    return [*(_Stack(localizer, part, []) for part in parts), *stacks]


def _derived_problem() -> Problem:
    return Problem(
        "derived_diffusion",
        "an isotropic/trace/ADC image the scanner derived inside the diffusion series: written apart (_ADC), not "
        "as a volume of the 4D",
        False,
    )


def _by_instance_problem(n: int) -> Problem:
    return Problem(
        "volumes_by_instance",
        f"no attribute tells the volumes apart: taken as chunks of {n} slices in Instance Number (0020,0013) "
        "order, as the files' Locations in Acquisition (0021,104F) / Images in Acquisition (0020,1002) say",
        False,
    )


def _assumed_b0_problem(n: int) -> Problem:
    return Problem(
        "assumed_b0",
        f"{n} volume(s) without diffusion attributes among encoded ones taken as b=0 (Canon/Toshiba write "
        "(0018,9087) only where a gradient is applied)",
        False,
    )


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
