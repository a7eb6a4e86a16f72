"""Slice geometry of a stack of parallel 2D frames: order, gaps, tilt, and the voxel -> LPS affine.

Pure functions on the numbers in the headers, so they can be tested against hand-made geometries.
Nothing here ever averages unequal gaps into one spacing: what is not a regular grid is reported as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "ORIENTATION_TOL",
    "Problem",
    "StackGeometry",
    "analyse_stack",
    "check_gaps",
    "gantry_tilt",
    "same_orientation",
    "single_slice_step",
    "slice_axes",
    "sort_along",
]

#: Two Image Orientation (Patient) values are the same if no direction cosine differs by more (~0.06 degrees).
ORIENTATION_TOL = 1e-3
#: Gaps are equal when they differ by at most this many mm plus GAP_REL_TOL of the typical gap.
GAP_ABS_TOL = 0.02
GAP_REL_TOL = 0.01
#: Above this angle (degrees) between the slice normal and the slice-to-slice step, the stack is tilted.
TILT_TOL_DEG = 0.1


@dataclass(frozen=True)
class Problem:
    """Something found in a series. ``blocking`` problems stop :func:`medimg.io.load` (with the reason)."""

    code: str
    detail: str
    blocking: bool

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "detail": self.detail, "blocking": self.blocking}


@dataclass
class StackGeometry:
    """The geometry of frames sharing one orientation, in slice order.

    ``order`` lists indices into the input frames, sorted by increasing position along ``normal``
    (``row_dir x col_dir``); ``positions`` are those positions (mm); ``gaps`` their differences.
    """

    row_dir: npt.NDArray[np.float64]
    col_dir: npt.NDArray[np.float64]
    normal: npt.NDArray[np.float64]
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing) as in (0028,0030)
    origin: npt.NDArray[np.float64]  # LPS mm of voxel (0, 0, 0)
    order: list[int]
    positions: npt.NDArray[np.float64]
    gaps: npt.NDArray[np.float64]
    slice_step: float  # regular step along the normal (mm); for one slice, the slice thickness
    tilt_deg: float
    in_plane_offsets: npt.NDArray[np.float64]  # (n, 2) shift of each slice along (row_dir, col_dir), mm
    problems: list[Problem] = field(default_factory=list)

    @property
    def regular(self) -> bool:
        return not any(p.code in {"uneven_gaps", "missing_slices", "duplicate_positions"} for p in self.problems)

    def affine_lps(self) -> npt.NDArray[np.float64]:
        """4x4 voxel (i=column, j=row, k=slice) -> LPS+ mm, for a regular, tilt-corrected grid."""
        affine = np.eye(4)
        affine[:3, 0] = self.row_dir * self.pixel_spacing[1]  # i runs along a row: column spacing
        affine[:3, 1] = self.col_dir * self.pixel_spacing[0]  # j runs down a column: row spacing
        affine[:3, 2] = self.normal * self.slice_step
        affine[:3, 3] = self.origin
        return affine


def same_orientation(a: Sequence[float], b: Sequence[float], tol: float = ORIENTATION_TOL) -> bool:
    """True if two Image Orientation (Patient) values agree within ``tol`` per direction cosine."""
    return bool(np.max(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))) <= tol)


def _fmt(values: npt.ArrayLike) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in np.asarray(values).ravel()) + "]"


def analyse_stack(
    iop: Sequence[float],
    positions_lps: npt.ArrayLike,
    pixel_spacing: tuple[float, float],
    slice_thickness: float | None = None,
) -> StackGeometry:
    """Order parallel slices along their normal and check that they form a regular grid.

    Args:
        iop: the shared Image Orientation (Patient) (0020,0037), 6 direction cosines.
        positions_lps: (n, 3) Image Position (Patient) (0020,0032) of each slice, in input order.
        pixel_spacing: Pixel Spacing (0028,0030), (row spacing, column spacing) mm.
        slice_thickness: used as the slice step of a single-slice stack (Slice Thickness (0018,0050) or
            Spacing Between Slices (0018,0088)).

    Slices are sorted by their position along the normal, never by Instance Number or file name. The problems
    it can report: ``duplicate_positions``, ``missing_slices``, ``uneven_gaps`` (all blocking), ``gantry_tilt``
    (non-blocking: :func:`medimg.io.load` corrects it by resampling), ``no_slice_spacing``.
    """
    row, col, normal = slice_axes(iop)
    order, pos, along = sort_along(positions_lps, normal)
    gaps = np.diff(along)
    n = len(order)
    if n == 1:
        step, problems = single_slice_step(slice_thickness)
        return StackGeometry(
            row, col, normal, pixel_spacing, pos[0], order, along, gaps, step, 0.0, np.zeros((n, 2)), problems
        )
    step, tol, problems = check_gaps(along)
    if any(p.code == "duplicate_positions" for p in problems):  # coinciding slices: no tilt to measure
        return StackGeometry(
            row, col, normal, pixel_spacing, pos[0], order, along, gaps, step, 0.0, np.zeros((n, 2)), problems
        )
    tilt, offsets, tilt_problems = gantry_tilt(pos, along, row, col, normal, tol)
    return StackGeometry(
        row, col, normal, pixel_spacing, pos[0], order, along, gaps, step, tilt, offsets, problems + tilt_problems
    )


def slice_axes(
    iop: Sequence[float],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Unit row direction, column direction and slice normal (``row x col``), each (3,) LPS, from the six
    direction cosines of Image Orientation (Patient) (0020,0037)."""
    row = np.asarray(iop[:3], dtype=float)
    col = np.asarray(iop[3:], dtype=float)
    row /= np.linalg.norm(row)
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    return row, col, normal


def sort_along(
    positions_lps: npt.ArrayLike, normal: npt.NDArray[np.float64]
) -> tuple[list[int], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Slices sorted by position along ``normal`` (3,): (input indices, (n, 3) positions, (n,) mm along normal).

    The sort is stable, so slices at one position keep their input order.
    """
    pos = np.asarray(positions_lps, dtype=float).reshape(-1, 3)
    along = pos @ normal
    order = [int(i) for i in np.argsort(along, kind="stable")]
    return order, pos[order], along[order]


def single_slice_step(slice_thickness: float | None) -> tuple[float, list[Problem]]:
    """The step (mm) of a one-slice stack: its thickness, else 1 mm with a ``no_slice_spacing`` problem."""
    if slice_thickness and slice_thickness > 0:
        return float(slice_thickness), []
    return 1.0, [Problem("no_slice_spacing", "single slice without Slice Thickness; using 1 mm", False)]


def check_gaps(along: npt.NDArray[np.float64]) -> tuple[float, float, list[Problem]]:
    """The slice step (mm), the gap tolerance (mm) and the gap problems of sorted positions ``along`` (n >= 2,).

    Regular stacks step by their mean gap; otherwise the median gap is kept as the step and the stack is
    reported as ``duplicate_positions``, ``missing_slices`` (gaps that are whole multiples of the regular gap)
    or ``uneven_gaps`` -- never averaged.
    """
    n = len(along)
    gaps = np.diff(along)
    typical = float(np.median(gaps))
    tol = GAP_ABS_TOL + GAP_REL_TOL * abs(typical)
    duplicates = int(np.count_nonzero(gaps <= GAP_ABS_TOL))
    if duplicates:
        detail = (
            f"{duplicates} slice(s) share a position with another slice (several echoes, phases or "
            "acquisitions in one series?); select one with --series or split the export"
        )
        return typical, tol, [Problem("duplicate_positions", detail, True)]
    deviant = np.abs(gaps - typical) > tol
    if not np.any(deviant):
        return float((along[-1] - along[0]) / (n - 1)), tol, []
    ratios = gaps / typical
    multiples = deviant & (np.abs(ratios - np.round(ratios)) * typical <= tol) & (np.round(ratios) >= 2)
    if not np.all(multiples == deviant):
        return typical, tol, [Problem("uneven_gaps", f"slice gaps differ: {_fmt(gaps)} mm (not averaged)", True)]
    missing = int(np.sum(np.round(ratios[multiples]) - 1))
    detail = (
        f"about {missing} slice(s) missing after position(s) {_fmt(along[:-1][multiples])} mm along the normal "
        f"(slice gaps {_fmt(gaps)} mm, regular gap {typical:.4g} mm; not averaged)"
    )
    return typical, tol, [Problem("missing_slices", detail, True)]


def gantry_tilt(
    pos: npt.NDArray[np.float64],
    along: npt.NDArray[np.float64],
    row: npt.NDArray[np.float64],
    col: npt.NDArray[np.float64],
    normal: npt.NDArray[np.float64],
    tol: float,
) -> tuple[float, npt.NDArray[np.float64], list[Problem]]:
    """Gantry tilt: slices parallel, but each shifted in its own plane.

    From sorted positions ``pos`` (n, 3) LPS mm (n >= 2, first and last distinct) and ``along`` (n,) returns the
    tilt angle (degrees) between the normal and the first-to-last step, each slice's in-plane shift (n, 2) along
    (row, col) in mm (zeros when untilted), and a ``gantry_tilt`` problem -- blocking only when the shifts are
    not proportional to the distance from the first slice (``tol`` mm, plus 0.05).
    """
    rel = pos - pos[0]
    in_plane = rel - np.outer(rel @ normal, normal)
    offsets = np.stack([in_plane @ row, in_plane @ col], axis=1)
    total = pos[-1] - pos[0]
    length = float(np.linalg.norm(total))  # > 0: the first and last slice are at distinct positions here
    cos = abs(float(total @ normal)) / length if length > 0 else 1.0
    tilt = float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    if tilt <= TILT_TOL_DEG:
        return tilt, np.zeros_like(offsets), []
    # a real tilt shifts each slice in proportion to its distance from the first
    expected = np.outer((along - along[0]) / (along[-1] - along[0]), offsets[-1])
    linear = bool(np.allclose(offsets, expected, atol=tol + 0.05))
    detail = f"slices are sheared by {tilt:.2f} degrees (gantry tilt); load() resamples onto an orthogonal grid" + (
        "" if linear else "; slice offsets are not linear"
    )
    return tilt, offsets, [Problem("gantry_tilt", detail, not linear)]
