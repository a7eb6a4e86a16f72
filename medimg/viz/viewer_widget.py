"""The ipyniivue widget the viewer draws with, without ipyniivue's copy of every volume back to the kernel.

ipyniivue (2.4.4) sends each volume's decoded voxels from the browser back to Python once NiiVue has read them
(the ``img`` trait, in 5 MB chunks, each also written to the browser's console), and reports the image loaded only
when that copy has arrived. medimg never needs it: the kernel already holds the arrays it sent (the read-out and
the window drag use them, :mod:`medimg.viz.viewer_readout`). For a 512 x 512 x 300 CT with a mask and a heatmap
that copy is about 400 MB over the websocket, sent synchronously on the browser's main thread before the first
picture (BENCHMARKS.md, "Browser viewer"), which is why opening such a case took minutes.

No ipyniivue option turns the copy off, so this module serves ipyniivue's own JavaScript with that one call
removed -- a textual edit of the wheel's ``static/widget.js``, found by a pattern. Where the pattern is not found
exactly once (another ipyniivue version), the stock widget is used unchanged and a warning says that opening
large volumes will be slow; ``tests/test_viewer.py`` checks that the edit applies to the pinned version. The
"image loaded" event is then passed on as soon as the browser sends it (ipyniivue waits for the copy).

Three more edits of the same kind (:data:`LOAD_ONCE`) take the layers in once instead of many times. NiiVue mixes all
overlays into one texture, and every ``updateGLVolume`` redraws every loaded layer, slice by slice, on the GPU;
ipyniivue calls it three times per volume while wiring the volume's properties, once more as the volume is added,
once at the end of the volume list and once at the end of the (empty) mesh list -- 19 calls and 36 layer redraws
for an image with three overlays (counted in Chromium), where 5 are needed: the first image alone (its picture
comes early) and all layers once at the end. Where WebGL runs on the CPU this was most of the time to the first
picture (BENCHMARKS.md, "Browser viewer"). The edits hold the redraws of a volume list being loaded and redraw
once when it is in, and skip the mesh list's redraw when there were and are no meshes. Each is applied only where
its pattern is found exactly once; otherwise it is left out with a warning (the viewer works, more slowly).
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import Any

__all__ = ["LOAD_ONCE", "NO_COPY_BACK", "SOFTWARE_3D_NOTE", "niivue", "patched_esm", "software_webgl"]

log = logging.getLogger(__name__)

#: The call in ipyniivue's widget.js that sends a loaded volume's voxels back: ``f(model, "img", nvimage.img.buffer,
#: dtype)`` (minified names differ between builds, the shape of the call does not)
NO_COPY_BACK = re.compile(
    r"\b[A-Za-z_$][\w$]*\(([A-Za-z_$][\w$]*),\"img\",([A-Za-z_$][\w$]*)\.img\.buffer,[A-Za-z_$][\w$]*\)"
)

_ID = r"[A-Za-z_$][\w$]*"


def _hold_volume_list(m: re.Match[str]) -> str:
    """The volume-list loader (``async function f(nv, model, registry){let v=await get(model, model.get("volumes"))
    ...``) renamed and wrapped: redraws held while it runs, one redraw at the end if any was held."""
    f, nv, rest = m.group(1), m.group(2), m.group(0).split("{", 1)[1]
    args = f"{nv},{m.group(3)},{m.group(4)}"
    return (
        f"async function {f}({args}){{{nv}.__medimgHold||({nv}.__medimgDrawn=!1);"
        f"{nv}.__medimgHold=({nv}.__medimgHold||0)+1;"
        f"try{{return await {f}__medimg({args})}}finally{{if(!--{nv}.__medimgHold&&{nv}.__medimgHeld)"
        f"{{{nv}.__medimgHeld=!1;{nv}.updateGLVolume()}}}}}}async function {f}__medimg({args}){{{rest}"
    )


#: (what, pattern, replacement) edits of ipyniivue's widget.js that take a volume list's layers in once
LOAD_ONCE: tuple[tuple[str, re.Pattern[str], Any], ...] = (
    (  # NiiVue's redraw of all layers: while a volume list loads, only the first (the image alone, drawn early);
        # the page counts the layers redrawn (window.__medimgLayerRedraws, read by the browser test)
        "hold redraws",
        re.compile(r"\bupdateGLVolume\(\)\{"),
        lambda m: (
            "updateGLVolume(){if(this.__medimgHold&&this.volumes.length){if(this.__medimgDrawn){this.__medimgHeld=!0;"
            "return}this.__medimgDrawn=!0}window.__medimgLayerRedraws=(window.__medimgLayerRedraws||0)+"
            "this.volumes.length;"
        ),
    ),
    (
        "one redraw per volume list",
        re.compile(
            rf"async function ({_ID})\(({_ID}),({_ID}),({_ID})\)\{{let {_ID}=await {_ID}\(\3,\3\.get\(\"volumes\"\)\)"
        ),
        _hold_volume_list,
    ),
    (  # the end of the mesh-list loader: redraw only when meshes came or went
        "no redraw for no meshes",
        re.compile(rf"(?<![\w$])({_ID})\.meshes=({_ID}),\1\.updateGLVolume\(\)\}}"),  # (?<!: no quadratic scan
        lambda m: (
            f"{m[1]}.meshes={m[2]},({m[2]}.length||{m[1]}.__medimgMeshes)&&{m[1]}.updateGLVolume(),"
            f"{m[1]}.__medimgMeshes={m[2]}.length}}"
        ),
    ),
)

#: WebGL renderers that draw on the CPU (Chrome's SwiftShader, Mesa's llvmpipe/softpipe, Windows' basic driver)
SOFTWARE_RENDERERS = ("swiftshader", "llvmpipe", "softpipe", "software", "basic render")
SOFTWARE_3D_NOTE = (
    "<i>3D tile left out: this browser draws WebGL on the CPU, where the 3D render would slow every scroll step "
    "(tick 3D to show it).</i>"
)


def software_webgl(renderer: str) -> bool:
    """True for a WebGL renderer string (``UNMASKED_RENDERER_WEBGL``) of a renderer that draws on the CPU."""
    low = renderer.lower()
    return any(name in low for name in SOFTWARE_RENDERERS)


@functools.cache
def patched_esm() -> str | None:
    """ipyniivue's widget JavaScript with the copy-back call replaced by ``void 0``; None where it is not found
    exactly once."""
    import ipyniivue  # type: ignore[import-untyped]

    stock = (Path(ipyniivue.__file__).parent / "static" / "widget.js").read_text(encoding="utf-8")
    source, found = NO_COPY_BACK.subn("void 0", stock)  # one pass over the 5 MB script per edit, kept if found once
    if found != 1:
        log.warning(
            "ipyniivue %s: its copy of each volume back to the kernel could not be switched off (the call was found "
            "%d times, expected once); the viewer works, but opening large volumes is slow",
            getattr(ipyniivue, "__version__", "?"),
            found,
        )
        return None
    for what, pattern, replacement in LOAD_ONCE:
        edited, hits = pattern.subn(replacement, source)
        if hits != 1:
            log.warning("ipyniivue: edit %r left out (its pattern was found %d times, expected once); the viewer "
                        "works, but loads its layers more slowly", what, hits)  # fmt: skip
            continue
        source = edited
    return source


@functools.cache
def _widget_class() -> type:
    import ipyniivue

    esm = patched_esm()
    if esm is None:
        return ipyniivue.NiiVue  # type: ignore[no-any-return]

    class NiiVue(ipyniivue.NiiVue):  # type: ignore[misc]
        """ipyniivue's NiiVue served without the copy back; "image loaded" fires when the browser says so."""

        _esm = esm
        copies_back = False

        def _handle_custom_msg(self, content: dict[str, Any], buffers: list[Any]) -> None:
            if content.get("event") != "image_loaded":
                super()._handle_custom_msg(content, buffers)
                return
            data = content.get("data", {})
            handler = self._event_handlers.get("image_loaded")
            idx = self.get_volume_index_by_id(data.get("id"))
            if handler is None or idx == -1:
                return
            volume = self.volumes[idx]
            for key, value in data.items():
                if key != "id" and not key.startswith("_") and key in volume.trait_names():
                    volume.set_trait(key, value)
            handler(volume)

    return NiiVue


def niivue(**options: Any) -> Any:
    """An ipyniivue ``NiiVue`` widget (``options`` as ipyniivue takes them), without the copy back where the
    installed ipyniivue allows it (``.copies_back`` is False then)."""
    return _widget_class()(**options)
