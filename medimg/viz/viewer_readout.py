"""What the browser viewer reports back to the kernel: the crosshair's position (voxel, RAS and LPS mm), the value
under it, the window a drag set, and whether the browser can draw WebGL at all.

NiiVue sends the crosshair as a voxel index of the RAS array it was given plus world millimetres; the kernel keeps
the same arrays, so the value under the crosshair is read here (HU for CT) rather than trusted from the browser.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DragPairing", "Position", "WebGLProbe", "position_at", "window_from_box"]

#: axis of the RAS array that each plane's slice index runs along
SLICE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}


@dataclass(frozen=True)
class Position:
    """The crosshair: ``ras_index`` (x, y, z) into the RAS array, ``index`` (i, j, k) into the Volume as loaded,
    ``ras_mm`` and ``lps_mm`` (scanner millimetres; LPS is DICOM's patient frame, (0020,0032) Image Position
    (Patient)), and ``value`` under it (HU for CT)."""

    ras_index: tuple[int, int, int]
    index: tuple[int, int, int]
    ras_mm: tuple[float, float, float]
    value: float

    @property
    def lps_mm(self) -> tuple[float, float, float]:
        x, y, z = self.ras_mm
        return (-x, -y, z)

    def slice_index(self, plane: str) -> int:
        """The slice shown in ``plane`` ("axial", "coronal", "sagittal"), counted on the RAS array."""
        return self.ras_index[SLICE_AXIS[plane]]

    def html(self, unit: str) -> str:
        """One line for the viewer's read-out, e.g. ``RAS (1.0, -2.5, 30.0) mm | LPS ... | value -35 HU``."""

        def mm(v: Sequence[float]) -> str:
            return "(" + ", ".join(f"{c:.1f}" for c in v) + ")"

        slices = " ".join(f"{p[:3]} {self.slice_index(p)}" for p in ("axial", "coronal", "sagittal"))
        value = f"{self.value:.6g}{' ' + unit if unit else ''}"
        return html.escape(
            f"RAS {mm(self.ras_mm)} mm | LPS {mm(self.lps_mm)} mm | voxel {self.index} | slices {slices} | "
            f"value {value}"
        )


def position_at(
    location: Mapping[str, Any],
    ras: npt.NDArray[Any],
    ras_affine: npt.NDArray[np.float64],
    affine: npt.NDArray[np.float64],
    frame: int = 0,
) -> Position:
    """The :class:`Position` of NiiVue's ``location_change`` message over the RAS array ``ras`` (its affine
    ``ras_affine``); ``affine`` is the loaded Volume's, for the (i, j, k) it was loaded with."""
    shape = ras.shape[:3]
    vox = tuple(int(np.clip(round(float(v)), 0, n - 1)) for v, n in zip(location["vox"], shape, strict=True))
    mm = (ras_affine @ np.array([*vox, 1.0]))[:3]  # the voxel's centre (NiiVue's mm is the pointer's)
    ijk = np.linalg.solve(affine, np.array([*mm, 1.0]))[:3]
    value = ras[vox] if ras.ndim == 3 else ras[(*vox, frame)]
    return Position(
        ras_index=(vox[0], vox[1], vox[2]),
        index=(round(float(ijk[0])), round(float(ijk[1])), round(float(ijk[2]))),
        ras_mm=(float(mm[0]), float(mm[1]), float(mm[2])),
        value=float(value),
    )


def window_from_box(
    ras: npt.NDArray[Any], vox_start: Sequence[float], vox_end: Sequence[float], frame: int = 0
) -> tuple[float, float] | None:
    """The (lowest, highest) intensity inside the box a right-drag drew on one slice: NiiVue's contrast drag
    (``calculateNewRange``) sets the window to exactly this range, and the kernel repeats it on its own array to
    know the window the reader now sees. None when the box is flat (min == max) or empty."""
    lo_hi = []
    for a, b, n in zip(vox_start, vox_end, ras.shape[:3], strict=True):
        lo, hi = sorted((round(float(a)), round(float(b))))
        lo_hi.append((max(lo, 0), min(hi if hi > lo else lo + 1, n)))
    box = ras[lo_hi[0][0] : lo_hi[0][1], lo_hi[1][0] : lo_hi[1][1], lo_hi[2][0] : lo_hi[2][1]]
    if ras.ndim == 4:
        box = box[..., frame]
    if box.size == 0 or float(box.min()) >= float(box.max()):
        return None
    return float(box.min()), float(box.max())


class DragPairing:
    """Pairs the two messages of NiiVue's contrast drag: the drag's box and the intensity change it caused. With
    a mouse the intensity message comes just after the drag's, with a touch just before; either way the box is
    handed out once both have arrived, so the kernel can set the same window from its own array."""

    def __init__(self) -> None:
        self._last: tuple[str, Any] = ("", None)

    def clear(self) -> None:
        self._last = ("", None)

    def drag(self, box: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """A drag ended: its box if the intensity message came first, else None (kept for that message)."""
        if self._last[0] == "intensity":
            self.clear()
            return box
        self._last = ("drag", box)
        return None

    def intensity(self) -> Mapping[str, Any] | None:
        """The window changed in the browser: the box of the drag that did it, or None (not a drag, e.g. a
        double click resetting NiiVue's own range; remembered in case the drag's message follows)."""
        kind, box = self._last
        if kind == "drag":
            self.clear()
            return box  # type: ignore[no-any-return]
        self._last = ("intensity", None)
        return None


def _probe_class() -> Any:
    import anywidget
    import traitlets as t

    class _WebGLProbe(anywidget.AnyWidget):  # type: ignore[misc]
        # Written here because no library reports it: a few lines that check the browser gives a WebGL2 context,
        # which NiiVue needs (the kernel switches to still (PNG) images when it reports False), and name its
        # renderer (a software one, e.g. SwiftShader, makes the viewer leave out its 3D tile).
        _esm = (
            "export default { render({ model }) { let ok = false, name = ''; try { const gl = document"
            ".createElement('canvas').getContext('webgl2'); ok = !!gl; if (gl) { const x = gl.getExtension("
            "'WEBGL_debug_renderer_info'); name = String(gl.getParameter(x ? x.UNMASKED_RENDERER_WEBGL : "
            "gl.RENDERER)); } } catch (e) { ok = false; } model.set('webgl2', ok); model.set('renderer', name); "
            "model.save_changes(); } };"
        )
        webgl2 = t.Bool(None, allow_none=True).tag(sync=True)
        renderer = t.Unicode("").tag(sync=True)

    return _WebGLProbe


def WebGLProbe() -> Any:  # a widget class built on first use, so ``import medimg.viz`` stays light
    """An invisible widget whose ``webgl2`` trait the browser sets to True/False once it is displayed, and
    ``renderer`` to the WebGL renderer's name."""
    global _PROBE
    if _PROBE is None:
        _PROBE = _probe_class()
    return _PROBE()


_PROBE: Any = None
