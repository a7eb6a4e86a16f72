"""Three-plane figures of volumes: CT window presets, label/prediction contours and heatmap overlays.

Radiological convention throughout: axial and coronal views show the patient's right on the image's left,
anterior at the top of axial views, superior at the top of coronal and sagittal views. The figure says so.
Volumes are first reoriented to RAS (nibabel), so the convention holds whatever the input orientation.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from medimg.io.atomic import atomic_path
from medimg.io.volume import Volume

__all__ = [
    "CT_WINDOWS",
    "ORIENTATION_NOTE",
    "PLANES",
    "Plane",
    "figure_png",
    "heatmap_2d",
    "pick_volume",
    "render_planes",
    "slice_2d",
    "to_ras",
    "window_image",
    "window_range",
]

#: (center, width) in HU.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "bone": (400.0, 1800.0),
}
Plane = Literal["axial", "coronal", "sagittal"]
PLANES: tuple[Plane, ...] = ("axial", "coronal", "sagittal")
ORIENTATION_NOTE = "radiological convention: patient's right on image left"


def to_ras(volume: Volume) -> Volume:
    """The same volume with its array reoriented to RAS (nibabel's ``as_closest_canonical``)."""
    import nibabel as nib

    img = nib.as_closest_canonical(nib.Nifti1Image(np.asanyarray(volume.array), volume.affine))
    return Volume(np.asanyarray(img.dataobj), img.affine, dict(volume.meta))


def window_image(
    array: npt.ArrayLike, preset: str | tuple[float, float] | None = None, modality: str | None = None
) -> npt.NDArray[np.float32]:
    """Map intensities to [0, 1] for display.

    ``preset``: a :data:`CT_WINDOWS` name, a (center, width) pair, or None -- CT then uses ``abdomen``, other
    modalities the 1st-99th percentile window.
    """
    a = np.asarray(array, dtype=np.float32)
    lo, hi = window_range(a, preset, modality)
    shown: npt.NDArray[np.float32] = np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1)
    return shown


def window_range(
    array: npt.ArrayLike, preset: str | tuple[float, float] | None = None, modality: str | None = None
) -> tuple[float, float]:
    """The (lowest, highest) intensity a window shows, e.g. (-160, 240) HU for ``abdomen`` (centre 40, width 400).

    ``preset`` as in :func:`window_image`; None gives ``abdomen`` for CT and the 1st-99th percentile otherwise.
    """
    if preset is None and modality == "CT":
        preset = "abdomen"
    if preset is None:
        a = np.asarray(array, dtype=np.float32)
        finite = a[np.isfinite(a)]
        lo, hi = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
        return float(lo), float(hi)
    c, w = CT_WINDOWS[preset] if isinstance(preset, str) else preset
    return float(c - w / 2), float(c + w / 2)


def slice_2d(ras: npt.NDArray[Any], plane: Plane, index: int | None = None) -> npt.NDArray[Any]:
    """A display-ready 2D slice of a RAS array: rows top->bottom, columns left->right on screen.

    axial: rows anterior->posterior, columns patient right->left; coronal: rows superior->inferior, columns
    right->left; sagittal: rows superior->inferior, columns anterior->posterior.
    """
    axis = {"sagittal": 0, "coronal": 1, "axial": 2}[plane]
    n = ras.shape[axis]
    i = n // 2 if index is None else int(np.clip(index, 0, n - 1))
    s = np.take(ras, i, axis=axis)
    # RAS: index increases towards patient Right (x), Anterior (y), Superior (z). The slice is s[x, y] (axial),
    # s[x, z] (coronal) or s[y, z] (sagittal); transposed and flipped both ways, rows run from the higher second
    # index down (anterior / superior at the top) and columns from the higher first index (patient's right on
    # the image left; anterior on the left of a sagittal view). One rule serves the three planes.
    return np.flip(s.T, axis=(0, 1))


def pick_volume(image: Volume, volume: int) -> tuple[Volume, str]:
    """The 3D volume ``volume`` of a 4D image (and a caption such as ``"volume 3 of 64 (b 1000)"``), or the image
    itself and ``""`` when it is 3D."""
    from medimg.errors import MedimgError, SeriesSelectionError

    array = np.asarray(image.array)
    if array.ndim == 3:
        return image, ""
    if array.ndim != 4:
        raise MedimgError(f"cannot display an image of shape {array.shape}: expected (i, j, k) or (i, j, k, t)")
    n = array.shape[3]
    if not 0 <= volume < n:
        raise SeriesSelectionError(f"volume {volume} does not exist: this 4D image has volumes 0..{n - 1}")
    entries = image.meta.get("volumes") or []
    extra = ""
    if volume < len(entries) and "b_value" in entries[volume]:
        extra = f" (b {entries[volume]['b_value']:g})"
    return Volume(array[..., volume], image.affine, dict(image.meta)), f"volume {volume + 1} of {n}{extra}"


def render_planes(
    image: Volume,
    *,
    heatmap: Volume | None = None,
    label: Volume | None = None,
    prediction: Volume | None = None,
    preset: str | tuple[float, float] | None = None,
    planes: Sequence[Plane] = PLANES,
    indices: dict[str, int] | None = None,
    alpha: float = 0.4,
    title: str | None = None,
    show: dict[str, bool] | None = None,
    volume: int = 0,
) -> Any:
    """A matplotlib figure: one panel per plane, image windowed, contours (label green, prediction yellow),
    heatmap in 'inferno' with ``alpha``. All volumes must share the image's grid. For a 4D image (i, j, k, t),
    ``volume`` picks the time point / diffusion volume shown."""
    import matplotlib.pyplot as plt

    image, which = pick_volume(image, volume)
    if which:
        title = f"{title + ', ' if title else ''}{which}"

    show = {"label": True, "prediction": True, "heatmap": True, **(show or {})}
    img = to_ras(image)
    others = {
        k: to_ras(v) for k, v in (("heatmap", heatmap), ("label", label), ("prediction", prediction)) if v is not None
    }
    fig, axes = plt.subplots(1, len(planes), figsize=(4.2 * len(planes), 4.6), squeeze=False)
    modality = str(image.meta.get("modality", "")) or None
    win = window_image(img.array, preset, modality)
    for ax, plane in zip(axes[0], planes, strict=True):
        idx = (indices or {}).get(plane)
        ax.imshow(slice_2d(win, plane, idx), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if "heatmap" in others and show["heatmap"]:
            ax.imshow(slice_2d(others["heatmap"].array, plane, idx), cmap="inferno", alpha=alpha, vmin=0, vmax=1)
        for key, color in (("label", "lime"), ("prediction", "yellow")):
            if key in others and show[key]:
                s = slice_2d(np.asarray(others[key].array) > 0, plane, idx).astype(float)
                if s.any():
                    ax.contour(s, levels=[0.5], colors=color, linewidths=1.2)
        left, right = ("A", "P") if plane == "sagittal" else ("R", "L")
        ax.set_title(plane)
        ax.text(0.02, 0.5, left, transform=ax.transAxes, color="cyan", fontsize=12, va="center")
        ax.text(0.95, 0.5, right, transform=ax.transAxes, color="cyan", fontsize=12, va="center")
        ax.axis("off")
    fig.suptitle((title + "\n" if title else "") + ORIENTATION_NOTE, fontsize=10)
    fig.tight_layout()
    return fig


def heatmap_2d(image: npt.ArrayLike, heatmap: npt.ArrayLike, *, title: str = "heatmap", alpha: float = 0.5) -> Any:
    """A matplotlib figure of a 2D image (x, y) beside the same image under its heatmap (x, y) in [0, 1].

    Both arrays are indexed like a Volume's slice, ``[x, y]``: x runs across the screen, y down it.
    """
    import matplotlib.pyplot as plt

    img, heat = np.asarray(image).T, np.asarray(heatmap).T  # [x, y] -> rows y, columns x
    fig, ax = plt.subplots(1, 2, figsize=(7, 3.5))
    ax[0].imshow(img, cmap="gray")
    ax[0].set_title("image")
    ax[1].imshow(img, cmap="gray")
    ax[1].imshow(heat, cmap="inferno", alpha=alpha)
    ax[1].set_title(title)
    for a in ax:
        a.axis("off")
    return fig


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """PNG bytes of a matplotlib figure (closed afterwards)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def save_png(fig: Any, path: str | Path, dpi: int = 90) -> Path:
    """Write a matplotlib figure as PNG to ``path``, atomically (keeping the user's umask); returns the path."""
    out = Path(path)
    with atomic_path(out) as tmp:
        tmp.write_bytes(figure_png(fig, dpi=dpi))
    return out
