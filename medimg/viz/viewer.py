"""The browser viewer: three linked planes and a 3D render drawn by NiiVue (WebGL) through ``ipyniivue``.

``view(volume | path | DICOM folder, overlays={"mask": ..., "label": ..., "heatmap": ...}, preset="abdomen")``
returns a :class:`Viewer`; display ``viewer.widget`` (or the Viewer itself) in JupyterLab or on a Voila page.

What the reader gets, all drawn in the browser (the kernel is not asked for a picture): axial, coronal and sagittal
planes linked by one crosshair plus a 3D render; mouse-wheel scroll through slices; right-drag a box to set the
window to the intensities inside it (NiiVue's contrast drag), or pick a CT preset (brain, abdomen, lung, bone ...;
MR: 1st-99th percentile); shift + left-drag measures a distance in mm; middle-drag pans a plane; with "Wheel" set to
zoom the wheel zooms the planes ("reset zoom" undoes it; over the 3D tile it always zooms); a radiological /
neurological switch (NiiVue draws the L/R letters accordingly). Each volume is sent once, as gzip NIfTI, and not
copied back (:mod:`medimg.viz.viewer_widget`); overlays: the model's mask (outline or fill), the reference label, a
heatmap or uncertainty map with an opacity slider, a DICOM SEG's segments in their own colours (the segment under
the crosshair named) or a Parametric Map. Under the picture, the crosshair in voxels, RAS and LPS mm and the value
under it (HU for CT). ipyniivue (NiiVue's anywidget) is used because its JavaScript ships inside the wheel: no
download at run time.

Where the browser cannot do WebGL2 the viewer says so and shows still (PNG) images of the three planes instead
(:func:`medimg.viz.planes.render_planes`, the renderer reports use).
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from medimg.errors import MedimgError
from medimg.io.volume import Volume
from medimg.viz.planes import CT_WINDOWS, figure_png, render_planes, to_ras, window_range
from medimg.viz.viewer_derived import check_same_frame, read_overlay, segment_array, segment_lut, segment_names
from medimg.viz.viewer_layers import (
    OVERLAY_KINDS,
    check_overlay_grid,
    map_range,
    nifti_gz,
    outline,
    overlay_array,
    still_layers,
)
from medimg.viz.viewer_readout import DragPairing, Position, WebGLProbe, position_at, window_from_box
from medimg.viz.viewer_widget import SOFTWARE_3D_NOTE, niivue, software_webgl

__all__ = ["AUTO_WINDOW", "Viewer", "view"]

AUTO_WINDOW = "auto (1-99 %)"
NO_WEBGL = (
    "This browser cannot draw WebGL2, which the interactive viewer needs: showing still images of the three "
    "planes instead (no scrolling or dragging)."
)
ImageLike = Volume | str | os.PathLike[str]


def _as_volume(thing: ImageLike, what: str) -> Volume:
    if isinstance(thing, Volume):
        return thing
    from medimg.io.load import load

    try:
        return load(thing)
    except FileNotFoundError as exc:
        raise MedimgError(f"cannot show the {what} {os.fspath(thing)!r}: no such file or folder") from exc


class Viewer:
    """One image with its overlays in NiiVue; ``.widget`` to display, ``.nv`` the ipyniivue widget.

    State the browser reports back: ``.position`` (a :class:`~medimg.viz.viewer_readout.Position`, None until
    the reader first moves the crosshair), ``.window`` (lowest, highest intensity shown), ``.webgl`` (None until
    the browser has answered)."""

    def __init__(
        self,
        image: Volume,
        overlays: Mapping[str, Volume] | None = None,
        *,
        preset: str | tuple[float, float] | None = None,
        mask_style: str = "outline",
        radiological: bool = True,
        height: int = 640,
        render_3d: bool | None = None,
        on_no_webgl: Callable[[], None] | None = None,
    ) -> None:
        import ipyniivue  # type: ignore[import-untyped]
        import ipywidgets as w

        overlays = dict(overlays or {})
        unknown = sorted(set(overlays) - set(OVERLAY_KINDS))
        if unknown:
            raise MedimgError(f"unknown overlay {unknown[0]!r}: use one of {', '.join(OVERLAY_KINDS)}")
        if np.ndim(image.array) not in (3, 4):
            raise MedimgError(f"cannot view an image of shape {np.shape(image.array)}: expected (i, j, k[, t])")
        for kind, overlay in overlays.items():
            check_same_frame(kind, overlay, image)
            check_overlay_grid(kind, overlay, image)
        #: segment number -> name of the "seg" overlay (a DICOM SEG's Segment Label (0062,0005))
        self.segments = segment_names(overlays["seg"]) if "seg" in overlays else {}
        self._seg_ras: Any = None
        self.image, self.overlays, self._on_no_webgl = image, overlays, on_no_webgl
        self.modality = str(image.meta.get("modality", "")).upper()
        self.unit = "HU" if self.modality == "CT" else ""
        ras = to_ras(image)
        self._ras, self._ras_affine = np.asarray(ras.array), np.asarray(ras.affine)
        self.position: Position | None = None
        self.webgl: bool | None = None
        self.renderer = ""  # the browser's WebGL renderer, e.g. "... SwiftShader ..." (drawn on the CPU)
        self._drags = DragPairing()  # NiiVue's contrast drag: a drag message and an intensity message

        self.nv = niivue(
            height=height,
            slice_type=ipyniivue.SliceType.MULTIPLANAR,
            multiplanar_show_render=ipyniivue.ShowRender.ALWAYS if render_3d else ipyniivue.ShowRender.NEVER,
            multiplanar_layout=ipyniivue.MultiplanarType.GRID,
            is_radiological_convention=radiological,
            drag_mode=ipyniivue.DragMode.CONTRAST,
            mouse_event_config={
                "leftButton": {
                    "primary": ipyniivue.DragMode.CROSSHAIR.value,
                    "withShift": ipyniivue.DragMode.MEASUREMENT.value,
                },
                "rightButton": ipyniivue.DragMode.CONTRAST.value,
                "centerButton": ipyniivue.DragMode.PAN.value,
            },
            back_color=(0.0, 0.0, 0.0, 1.0),
            show_3d_crosshair=True,
            crosshair_color=(0.0, 0.8, 1.0, 1.0),
            is_colorbar=False,
        )
        self._outline = mask_style == "outline"
        self._layers = self._volumes(ras, overlays)
        self.nv.load_volumes(list(self._layers.values()))
        self._build_controls(w, preset, mask_style, radiological)
        self._auto_3d = render_3d is None  # 3D tile: on once the browser says its WebGL is not drawn on the CPU
        self.show_3d.value = bool(render_3d)
        self.apply_preset(self.preset.value)
        if isinstance(preset, tuple):  # (centre, width) of the caller's own window
            self.set_window(*window_range(self._ras, preset))
        self.nv.on_location_change(self._location_changed)
        self.nv.on_intensity_change(self._intensity_changed)
        self.nv.on_drag_release(self._drag_released)
        self.nv.on_image_loaded(lambda _volume: setattr(self.status, "value", ""))

    def _volumes(self, ras: Volume, overlays: Mapping[str, Volume]) -> dict[str, Any]:
        """The ipyniivue volumes, image first, each sent once as gzip NIfTI on the RAS grid (compressed side by
        side: zlib lets go of the GIL, so the layers of a large case are packed on all cores)."""
        from concurrent.futures import ThreadPoolExecutor

        import ipyniivue  # type: ignore[import-untyped]

        specs: dict[str, tuple[Any, float | None, dict[str, Any]]] = {"image": (self._ras, None, {"colormap": "gray"})}
        for kind in OVERLAY_KINDS:  # drawing order: maps below masks
            if kind not in overlays:
                continue
            style = OVERLAY_KINDS[kind]
            if style.segments:  # one colour per segment: NiiVue's label colour map
                self._seg_ras = segment_array(to_ras(overlays[kind]))
                specs[kind] = (self._seg_ras, None, {"colormap": style.colormap, "opacity": style.opacity,
                               "colormap_label": segment_lut(overlays[kind], self.segments)})  # fmt: skip
                continue
            arr, slope = overlay_array(kind, to_ras(overlays[kind]))
            low, high = (style.cal_min, style.cal_max) if style.binary else map_range(kind, arr, slope)
            # a mask goes twice, filled and as its outline (small once compressed): the style switch only
            # changes opacities in the browser, nothing is sent again
            shapes = [(kind, arr, slope, not (style.binary and self._outline))]
            if style.binary:
                shapes.append((f"{kind} outline", outline(arr), None, self._outline))
            for name, data, scale, visible in shapes:
                specs[name] = (data, scale, {"colormap": style.colormap, "cal_min": low, "cal_max": high,
                               "opacity": style.opacity if visible else 0.0,
                               "colormap_type": ipyniivue.ColormapType.ZERO_TO_MAX_TRANSPARENT_BELOW_MIN})  # fmt: skip
        with ThreadPoolExecutor(max_workers=min(len(specs), os.cpu_count() or 1)) as pool:
            packed = list(pool.map(lambda spec: nifti_gz(spec[0], self._ras_affine, spec[1]), specs.values()))
        return {
            name: ipyniivue.Volume(name=f"{name.replace(' ', '-')}.nii.gz", data=data,
                                   **({} if name == "image" else {"colorbar_visible": False}), **spec[2])
            for (name, spec), data in zip(specs.items(), packed, strict=True)
        }  # fmt: skip

    def _build_controls(self, w: Any, preset: Any, mask_style: str, radiological: bool) -> None:
        ct = self.modality == "CT"
        names = [*CT_WINDOWS] if ct else [AUTO_WINDOW, *CT_WINDOWS]
        first = preset if isinstance(preset, str) else ("abdomen" if ct else AUTO_WINDOW)
        if first not in names:
            raise MedimgError(f"unknown window preset {first!r}: use one of {', '.join(names)}")
        self.preset = w.Dropdown(options=names, value=first, description="Window", layout=w.Layout(width="240px"))
        self.preset.observe(self._preset_picked, names="value")
        self.convention = w.ToggleButtons(
            options=["radiological", "neurological"],
            value="radiological" if radiological else "neurological",
            tooltips=["patient's right on screen left", "patient's right on screen right"],
        )
        self.convention.observe(lambda c: self.set_radiological(c["new"] == "radiological"), names="value")
        self.wheel = w.ToggleButtons(options=["scroll", "zoom"], value="scroll", description="Wheel",
                                     tooltips=["steps through slices", "zooms the planes"])  # fmt: skip
        self.wheel.observe(lambda c: self.set_wheel_zoom(c["new"] == "zoom"), names="value")
        self.unzoom = w.Button(description="reset zoom", layout=w.Layout(width="100px"))
        self.unzoom.on_click(lambda _b: self.reset_zoom())
        self.show_3d = w.Checkbox(value=False, description="3D", indent=False, layout=w.Layout(width="60px"))
        self.show_3d.observe(lambda c: self.set_3d(bool(c["new"])), names="value")
        extra: list[Any] = [self.wheel, self.unzoom, self.show_3d]
        if "mask" in self.overlays or "label" in self.overlays:
            self.mask_style = w.ToggleButtons(options=["outline", "fill"], value=mask_style)
            self.mask_style.observe(lambda c: self._set_outline(c["new"] == "outline"), names="value")
            extra.append(self.mask_style)
        self.shown: dict[str, Any] = {}
        for kind in self.overlays:
            box = w.Checkbox(value=True, description=OVERLAY_KINDS[kind].caption, indent=False,
                             layout=w.Layout(width="150px"))  # fmt: skip
            box.observe(lambda c, k=kind: self._show(k, c["new"]), names="value")
            self.shown[kind] = box
        self.opacity = w.FloatSlider(value=0.4, min=0.0, max=1.0, step=0.05, description="Map α",
                                     layout=w.Layout(width="260px"))  # fmt: skip
        self.opacity.observe(lambda c: self._set_map_opacity(float(c["new"])), names="value")
        if {"heatmap", "uncertainty"} & set(self.overlays):
            extra.append(self.opacity)
        self.frame: Any = None
        if self._ras.ndim == 4:
            n = self._ras.shape[3]
            self.frame = w.IntSlider(value=0, min=0, max=n - 1, description="Volume", continuous_update=True)
            self.frame.observe(lambda c: setattr(self._layers["image"], "frame_4d", int(c["new"])), names="value")
            extra.append(self.frame)
        self.readout = w.HTML("<i>click, scroll or drag in the picture</i>")
        self.window_text = w.HTML()
        self.notice = w.HTML()
        self.status = w.HTML("<i>loading the viewer in the browser (WebGL) ...</i>")
        self.still = w.Image(format="png", layout=w.Layout(width="900px", display="none"))
        self._probe = WebGLProbe()
        self._probe.observe(lambda c: self._webgl_answered(bool(c["new"])), names="webgl2")
        self._probe.observe(lambda c: self._renderer_answered(str(c["new"])), names="renderer")
        bar = w.HBox([self.preset, self.convention, *extra], layout=w.Layout(flex_flow="row wrap"))
        shows = w.HBox(list(self.shown.values()))
        self.widget = w.VBox([bar, shows, self.status, self.nv, self.still, self.readout, self.window_text,
                              self.notice, self._probe])  # fmt: skip
        self.widget.add_class("medimg-viewer")  # a handle for pages and tests with more than one viewer

    # ---- what the controls do -------------------------------------------------------------------------------
    def _preset_picked(self, change: Mapping[str, Any]) -> None:
        if change["new"] is not None:  # None: a drag set the reader's own window
            self.apply_preset(change["new"])

    def apply_preset(self, name: str) -> None:
        """Set the image's window to a CT preset (centre/width in HU) or, for ``auto``, the 1st-99th percentile."""
        lo, hi = window_range(self._ras, None if name == AUTO_WINDOW else name, None)
        self.set_window(lo, hi)

    def set_window(self, lowest: float, highest: float) -> None:
        """Show intensities from ``lowest`` (black) to ``highest`` (white), e.g. -160 and 240 HU."""
        image = self._layers["image"]
        image.cal_min, image.cal_max = float(lowest), float(highest)
        self._show_window()

    @property
    def window(self) -> tuple[float, float]:
        """(lowest, highest) intensity the image's window shows now."""
        image = self._layers["image"]
        return float(image.cal_min), float(image.cal_max)

    def _show_window(self) -> None:
        lo, hi = self.window
        unit = f" {self.unit}" if self.unit else ""
        self.window_text.value = f"window {lo:.6g} .. {hi:.6g}{unit} (width {hi - lo:.6g}, level {(lo + hi) / 2:.6g})"

    def set_radiological(self, radiological: bool) -> None:
        """Radiological (patient's right on the screen's left) or neurological convention."""
        self.nv.opts.is_radiological_convention = bool(radiological)

    def set_wheel_zoom(self, zoom: bool) -> None:
        """The mouse wheel zooms the planes about the crosshair (NiiVue's pan/zoom mode; a middle-drag pans) or,
        the default, steps through slices."""
        import ipyniivue  # type: ignore[import-untyped]

        self.nv.opts.drag_mode = ipyniivue.DragMode.PAN if zoom else ipyniivue.DragMode.CONTRAST

    def set_3d(self, shown: bool) -> None:
        """Show or leave out the 3D render tile beside the three planes."""
        import ipyniivue  # type: ignore[import-untyped]

        self.nv.opts.multiplanar_show_render = ipyniivue.ShowRender.ALWAYS if shown else ipyniivue.ShowRender.NEVER

    def _renderer_answered(self, renderer: str) -> None:
        self.renderer = renderer
        if not self._auto_3d or not renderer:
            return
        if software_webgl(renderer):
            self.notice.value = SOFTWARE_3D_NOTE
        else:
            self.show_3d.value = True

    def reset_zoom(self) -> None:
        """Back to the whole plane in each tile, unpanned."""
        self.nv.scene.pan2d_xyzmm = [0.0, 0.0, 0.0, 1.0]

    def _set_outline(self, outline: bool) -> None:
        self._outline = outline
        for kind, box in self.shown.items():
            self._show(kind, bool(box.value))

    def _show(self, kind: str, visible: bool) -> None:
        style = OVERLAY_KINDS[kind]
        if style.segments:
            self._layers[kind].opacity = style.opacity if visible else 0.0
            return
        if not style.binary:
            self._layers[kind].opacity = float(self.opacity.value) if visible else 0.0
            return
        self._layers[kind].opacity = style.opacity if visible and not self._outline else 0.0
        self._layers[f"{kind} outline"].opacity = style.opacity if visible and self._outline else 0.0

    def _set_map_opacity(self, opacity: float) -> None:
        for kind in ("heatmap", "uncertainty"):
            if kind in self._layers and self.shown[kind].value:
                self._layers[kind].opacity = opacity

    # ---- what the browser reports ---------------------------------------------------------------------------
    def _frame(self) -> int:
        return 0 if self.frame is None else int(self.frame.value)

    def _location_changed(self, location: Mapping[str, Any]) -> None:
        self._drags.clear()
        self.position = position_at(location, self._ras, self._ras_affine, self.image.affine, self._frame())
        self.readout.value = self.position.html(self.unit) + self._segment_here(self.position.ras_index)

    def _segment_here(self, ras_index: tuple[int, int, int]) -> str:
        """`` | segment: liver`` when the crosshair is inside a segment of the "seg" overlay, else nothing."""
        number = 0 if self._seg_ras is None else int(self._seg_ras[ras_index])
        return f" | segment: {html.escape(self.segments.get(number, str(number)))}" if number else ""

    def _drag_released(self, drag: Mapping[str, Any]) -> None:
        self._window_from_drag(self._drags.drag(drag))

    def _intensity_changed(self, _volume: Any) -> None:
        drag = self._drags.intensity()
        if drag is None:  # e.g. a double click resets NiiVue's own robust range, which the kernel does not repeat
            self.window_text.value = "window set in the browser (NiiVue's automatic range)"
        self._window_from_drag(drag)

    def _window_from_drag(self, drag: Mapping[str, Any] | None) -> None:
        box = None if drag is None else window_from_box(self._ras, drag["vox_start"], drag["vox_end"], self._frame())
        if box is not None:
            self.preset.index = None  # the window is the reader's own now, no preset's
            self.set_window(*box)

    def _webgl_answered(self, ok: bool) -> None:
        self.webgl = ok
        if ok:
            return
        self.status.value = f"<b style='color:#b00'>{NO_WEBGL}</b>"
        self.nv.layout.display = "none"
        if self._on_no_webgl is not None:
            self._on_no_webgl()
            return
        fig = render_planes(self.image, **still_layers(self.overlays), preset=None if self.preset.value == AUTO_WINDOW
                            else self.preset.value)  # fmt: skip
        self.still.value = figure_png(fig, dpi=90)
        self.still.layout.display = ""

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def view(
    image: ImageLike,
    overlays: Mapping[str, ImageLike] | None = None,
    *,
    preset: str | tuple[float, float] | None = None,
    mask_style: str = "outline",
    radiological: bool = True,
    height: int = 640,
    render_3d: bool | None = None,
) -> Viewer:
    """Show ``image`` (a :class:`~medimg.io.volume.Volume`, a NIfTI file, a DICOM file or folder read by
    :func:`medimg.load`) in the browser viewer.

    ``overlays``: ``{"mask": model's mask, "label": reference label, "heatmap": map in [0, 1], "uncertainty":
    map in [0, 1], "seg": numbered segments}``, each a Volume or a file, on the image's voxel grid and in its
    (0020,0052) Frame of Reference (else :class:`~medimg.errors.MedimgError` naming both). A DICOM SEG ``.dcm``
    opens as ``"seg"`` (each segment in its recommended colour, its name in the read-out) or as ``"mask"`` /
    ``"label"``; a DICOM Parametric Map ``.dcm`` as ``"heatmap"`` or ``"uncertainty"``
    (:mod:`medimg.viz.viewer_derived`). ``preset``: a CT window name of :data:`~medimg.viz.planes.CT_WINDOWS` (CT
    default ``abdomen``; MR and others the 1st-99th percentile). ``mask_style``: ``"outline"`` or ``"fill"``.
    ``render_3d``: the 3D render tile beside the planes; None (default) shows it once the browser reports a WebGL
    drawn by a graphics card, and leaves it out (the reader can tick "3D") where WebGL runs on the CPU (SwiftShader,
    llvmpipe): there the 3D ray-cast is redrawn with every scroll step, 20x the cost of the three planes at
    512 x 512 x 300 (BENCHMARKS.md). A 4D image (i, j, k, t) gets a volume slider."""
    if mask_style not in ("outline", "fill"):
        raise MedimgError(f"mask_style must be 'outline' or 'fill', not {mask_style!r}")
    vol = _as_volume(image, "image")
    layers = {}
    for kind, thing in (overlays or {}).items():  # a DICOM SEG / Parametric Map on the image series' grid
        derived = read_overlay(kind, thing, image)
        layers[kind] = derived if derived is not None else _as_volume(thing, kind)
    return Viewer(vol, layers, preset=preset, mask_style=mask_style, radiological=radiological, height=height,
                  render_3d=render_3d)  # fmt: skip
