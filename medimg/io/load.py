"""``medimg.io.load``: one entry point for a DICOM folder, a DICOM file, a DICOMDIR or a NIfTI file."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from medimg.errors import (
    MedimgError,
    NoPixelDataError,
    SeriesGeometryError,
    SeriesSelectionError,
    UnsupportedTransferSyntaxError,
)
from medimg.io.dicom.diffusion import fsl_bvecs
from medimg.io.dicom.header import Frame
from medimg.io.dicom.philips import philips_precise
from medimg.io.dicom.pixels import read_frames, read_volumes
from medimg.io.dicom.scan import ScanResult, scan
from medimg.io.dicom.series import Series
from medimg.io.orientation import lps_to_ras_affine
from medimg.io.volume import Volume, is_nifti, read_nifti

__all__ = ["PhilipsScaling", "list_images", "load", "load_series", "series_listing"]

UnevenPolicy = Literal["error", "resample"]
TiltPolicy = Literal["resample", "error"]
#: Philips MR values: ``"precise"`` (default, as dcm2niix) the floating-point value FP = (SV x RS + RI) / (RS x SS);
#: ``"display"`` the Rescale Slope/Intercept value (see :mod:`medimg.io.dicom.philips`).
PhilipsScaling = Literal["precise", "display"]
PHILIPS_SCALING_RULES = {
    "precise": "Philips floating-point value FP = (SV x RS + RI) / (RS x SS), SS = (2005,100E)",
    "display": "Philips display value SV x RS + RI (Rescale Slope/Intercept (0028,1053)/(0028,1052))",
}
#: How many series a refusal names before it says how many more there are.
LISTED_SERIES = 4


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The images :func:`load` can open in ``folder``, sorted: NIfTI files (:func:`is_nifti`) and sub-folders
    (DICOM series or studies); hidden entries skipped. One listing for ``medimg adapt`` and the review
    worklist, so that both see the same cases."""
    return sorted(p for p in Path(folder).iterdir() if not p.name.startswith(".") and (p.is_dir() or is_nifti(p)))


def load(
    path: str | os.PathLike[str],
    *,
    series: str | None = None,
    uneven: UnevenPolicy = "error",
    tilt: TiltPolicy = "resample",
    allow_nonfinite: bool = False,
    reference: str | os.PathLike[str] | Series | None = None,
    philips_scaling: PhilipsScaling = "precise",
) -> Volume:
    """Load one image volume with its geometry.

    Args:
        path: a folder of DICOM files (any names, nested), a single DICOM file (including enhanced multi-frame
            CT/MR), a DICOMDIR, or a ``.nii``/``.nii.gz`` file.
        series: which series to load when ``path`` holds several: a Series Instance UID, or a key
            ``UID#N`` as ``medimg scan`` prints it. Localizers are never picked implicitly.
        uneven: what to do with slice gaps that differ or with missing slices. ``"error"`` (default) refuses
            with the gaps listed. ``"resample"`` interpolates linearly onto a regular grid whose step is the
            smallest gap, and records that in ``meta["resampled"]`` -- an explicit choice, never a default.
        tilt: ``"resample"`` (default) corrects gantry tilt by shifting each slice in its plane onto an
            orthogonal grid (linear interpolation, as dcm2niix's ``_Tilt`` output does) and records the
            angle in ``meta["gantry_tilt_deg"]``; ``"error"`` refuses tilted series.
        allow_nonfinite: accept NaN/inf voxels in NIfTI input.
        reference: for a DICOM SEG / Parametric Map file: the folder of the image series it references, to
            place a sparse SEG on that series' grid (see :func:`medimg.io.derived.read_seg`).
        philips_scaling: Philips MR values as ``"precise"`` floating-point values (default, as dcm2niix's
            default ``-p y``) or ``"display"`` values; the rule used is in ``meta["value_scaling"]``.

    Returns:
        A :class:`Volume` (see its docstring for the axis and affine contract). CT is in Hounsfield units.

    Raises:
        SeriesSelectionError: no series, or several and ``series`` not given (the message lists them).
        SeriesGeometryError: the slices do not form a regular grid under the chosen policies.
        NotDicomError, DicomReadError, NoPixelDataError, UnsupportedTransferSyntaxError, ImageValueError.
    """
    p = Path(path)
    if p.is_file() and is_nifti(p):
        return read_nifti(p, allow_nonfinite=allow_nonfinite)
    if not p.exists():
        raise MedimgError("no such file or folder", p)
    from medimg.io.derived.dispatch import read_if_derived  # DICOM SEG -> labels, Parametric Map -> values

    derived = read_if_derived(p, reference=reference)
    if derived is not None:
        return derived
    found = scan(p)
    chosen = _choose(found, series, p)
    return load_series(chosen, uneven=uneven, tilt=tilt, philips_scaling=philips_scaling)


def _choose(found: ScanResult, series: str | None, path: Path) -> Series:
    if series is not None:
        return found.find(series)
    if not found.series:
        reasons = sorted(set(found.skipped.values()))[:3]
        detail = f" ({'; '.join(reasons)})" if reasons else ""
        raise SeriesSelectionError(f"no DICOM image series found{detail}", path)
    candidates = [s for s in found.series if not s.localizer and s.header.has_pixels] or found.series
    if len(candidates) == 1:
        return candidates[0]
    raise SeriesSelectionError(
        f"{len(candidates)} series found, pass series=KEY (or --series): {series_listing(candidates)}", path
    )


def series_listing(candidates: list[Series], limit: int = LISTED_SERIES) -> str:
    """At most ``limit`` series as ``KEY MODALITY 'description' shape``, then how many more: one line."""
    listing = "; ".join(f"{s.key} {s.modality} {s.description!r} {s.shape}" for s in candidates[:limit])
    more = len(candidates) - limit
    return listing + (f"; and {more} more (medimg scan lists them all)" if more > 0 else "")


def load_series(
    series: Series,
    *,
    uneven: UnevenPolicy = "error",
    tilt: TiltPolicy = "resample",
    philips_scaling: PhilipsScaling = "precise",
) -> Volume:
    """Read one scanned :class:`Series` into a :class:`Volume`, applying the geometry and value policies of
    :func:`load`."""
    where = series.files[0] if len(series.files) == 1 else os.path.dirname(series.files[0])
    blocking = [p for p in series.problems if p.blocking]
    resample_gaps = False
    if blocking and uneven == "resample":
        resample_gaps = all(p.code in {"uneven_gaps", "missing_slices"} for p in blocking)
    if blocking and not resample_gaps:
        first = blocking[0]
        if first.code == "missing_decoder":
            raise UnsupportedTransferSyntaxError(first.detail, series.files[0])
        if first.code == "no_pixel_data":
            raise NoPixelDataError(first.detail, series.files[0])
        hint = (
            " (pass uneven='resample' / --uneven resample to interpolate a regular grid)"
            if first.code
            in {
                "uneven_gaps",
                "missing_slices",
            }
            else ""
        )
        raise SeriesGeometryError(
            f"series {series.key} cannot be loaded as a volume: " + "; ".join(map(str, blocking)) + hint,
            where,
        )
    tilted = any(p.code == "gantry_tilt" for p in series.problems)
    if tilted and tilt == "error":
        raise SeriesGeometryError(f"series {series.key}: gantry tilt and tilt='error'", where)

    meta = _meta(series)
    frames, volumes, scaling = _value_rule(series, philips_scaling)
    if scaling is not None:
        meta["value_scaling"] = scaling
    data = read_frames(frames) if volumes is None else read_volumes(volumes)
    g = series.geometry
    if g is None:  # a 2D image without patient geometry (X-ray, secondary capture)
        f = series.frames[0]
        ps = f.pixel_spacing or (1.0, 1.0)
        affine = np.diag([ps[1], ps[0], 1.0, 1.0])
        meta["geometry"] = "none (identity orientation)"
        return Volume(array=data, affine=affine, meta=meta)
    if tilted and np.any(g.in_plane_offsets):
        data = _per_volume(data, lambda d: _untilt(d, g.in_plane_offsets, g.pixel_spacing))
        meta["gantry_tilt_deg"] = round(g.tilt_deg, 4)
        meta["resampled"] = "gantry tilt corrected (in-plane linear interpolation)"
    affine_lps = g.affine_lps()
    if resample_gaps:
        step = _regular_step(g.positions)
        data = _per_volume(data, lambda d: _regular_grid(d, g.positions, step))
        affine_lps[:3, 2] = g.normal * step
        meta["resampled"] = f"uneven slice gaps {np.round(g.gaps, 4).tolist()} mm interpolated to {step:.4g} mm"
    affine = lps_to_ras_affine(affine_lps)
    if series.volumes is not None:
        meta["volumes"] = describe_volumes(series.volumes, affine)
    return Volume(array=data, affine=affine, meta=meta)


def _value_rule(
    series: Series, philips_scaling: PhilipsScaling
) -> tuple[list[Frame], list[list[Frame]] | None, str | None]:
    """The frames to read, with Philips' floating-point scale applied when asked and known, and the rule used
    (None when the series is not a scaled Philips image)."""
    volumes = series.volumes
    frames = series.frames if volumes is None else [f for v in volumes for f in v]
    if philips_scaling not in PHILIPS_SCALING_RULES:
        raise MedimgError(f"philips_scaling must be one of {sorted(PHILIPS_SCALING_RULES)}, not {philips_scaling!r}")
    if not frames or any(f.philips_scale is None for f in frames):
        return series.frames, volumes, None
    if philips_scaling == "display":
        return series.frames, volumes, PHILIPS_SCALING_RULES["display"]

    def precise(f: Frame) -> Frame:
        assert f.philips_scale is not None
        slope, intercept = philips_precise(f.slope, f.intercept, f.philips_scale)
        return replace(f, slope=slope, intercept=intercept)

    if volumes is None:
        return [precise(f) for f in series.frames], None, PHILIPS_SCALING_RULES["precise"]
    scaled = [[precise(f) for f in v] for v in volumes]
    return scaled[0], scaled, PHILIPS_SCALING_RULES["precise"]


def _per_volume(data: npt.NDArray[Any], fn: Callable[[npt.NDArray[Any]], npt.NDArray[Any]]) -> npt.NDArray[Any]:
    """Apply a 3D resampling to a 3D array or to each volume of a 4D one."""
    if data.ndim == 3:
        return fn(data)
    return np.stack([fn(data[:, :, :, t]) for t in range(data.shape[3])], axis=3)


def describe_volumes(volumes: list[list[Frame]], affine_ras: npt.NDArray[np.float64]) -> list[dict[str, Any]]:
    """``meta["volumes"]``: per volume, what sets it apart (b-value and gradient, time, trigger, acquisition).

    ``gradient`` is the diffusion direction in the image's voxel frame with FSL's sign rule (what ``.bvec`` holds,
    see :func:`medimg.io.dicom.diffusion.fsl_bvecs`); ``gradient_lps`` is the direction as the DICOM file gives it.
    """
    firsts = [v[0] for v in volumes]
    bvecs = fsl_bvecs([f.diffusion.gradient if f.diffusion else None for f in firsts], affine_ras)
    out = []
    for t, f in enumerate(firsts):
        entry: dict[str, Any] = {"index": t}
        if f.diffusion is not None:
            entry["b_value"] = f.diffusion.b_value
            entry["gradient"] = [round(float(x), 6) for x in bvecs[:, t]]
            entry["gradient_lps"] = None if f.diffusion.gradient is None else list(f.diffusion.gradient)
            entry["diffusion_source"] = f.diffusion.source
        for key, value in (
            ("temporal_position", f.temporal),
            ("trigger_time_ms", f.trigger),
            ("acquisition_time", f.acquisition_time),
            ("acquisition_number", f.acquisition),
        ):
            if value is not None:
                entry[key] = value
        out.append(entry)
    return out


def _meta(series: Series) -> dict[str, Any]:
    h = series.header
    meta: dict[str, Any] = {
        "source_format": "dicom",
        "modality": series.modality,
        "series_uid": series.series_uid,
        "frame_of_reference_uid": h.frame_of_reference,  # (0020,0052): a SEG / map must share it to overlay
        "series_key": series.key,
        "series_description": series.description,
        "series_number": h.series_number,
        "sop_class_uid": h.sop_class,
        "transfer_syntax": h.transfer_syntax_name,
        "value_unit": h.value_unit,
        "window_presets": [list(w) for w in h.window_presets],
        "n_files": len(series.files),
        "problems": [p.as_dict() for p in series.problems],
        "dicom": dict(h.sidecar),
    }
    if series.frames[0].part == "fieldmaphz":
        meta["value_unit"] = "Hz"  # a scanner-computed B0 field map: off-resonance frequency, kept as float
    if series.geometry is not None and series.geometry.gaps.size:
        meta["slice_gaps_mm"] = np.round(series.geometry.gaps, 5).tolist()
    return meta


def _untilt(
    data: npt.NDArray[Any], offsets_mm: npt.NDArray[np.float64], pixel_spacing: tuple[float, float]
) -> npt.NDArray[Any]:
    """Shift each slice k in its plane by its tilt offset so all slices sit on one orthogonal grid.

    Output voxel (i, j) of slice k samples the input slice at (i - di_k, j - dj_k), where (di_k, dj_k) is the
    slice's in-plane offset from the first slice in voxels (i along rows: column spacing; j: row spacing).
    Hand-written because no MONAI/SimpleITK call takes a per-slice shift; scipy does the interpolation.
    """
    from scipy.ndimage import shift

    out = np.empty(data.shape, dtype=np.float32)
    fill = float(data.min())
    for k in range(data.shape[2]):
        di = offsets_mm[k, 0] / pixel_spacing[1]
        dj = offsets_mm[k, 1] / pixel_spacing[0]
        out[:, :, k] = shift(data[:, :, k].astype(np.float32), (di, dj), order=1, mode="constant", cval=fill)
    return out


def _regular_step(positions: npt.NDArray[np.float64]) -> float:
    """The step of the regular grid that uneven gaps are resampled onto: the smallest gap."""
    return float(np.min(np.diff(positions)))


def _regular_grid(data: npt.NDArray[Any], positions: npt.NDArray[np.float64], step: float) -> npt.NDArray[Any]:
    """Linear interpolation along k from irregular ``positions`` onto a grid of spacing ``step``."""
    n = int(np.floor((positions[-1] - positions[0]) / step + 1e-6)) + 1
    grid = positions[0] + step * np.arange(n)
    idx = np.clip(np.searchsorted(positions, grid, side="right") - 1, 0, len(positions) - 2)
    w = ((grid - positions[idx]) / (positions[idx + 1] - positions[idx])).astype(np.float32)
    lo = data[:, :, idx].astype(np.float32)
    hi = data[:, :, idx + 1].astype(np.float32)
    out: npt.NDArray[Any] = lo * (1 - w) + hi * w
    return out
