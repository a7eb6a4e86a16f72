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
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import Any

__all__ = ["NO_COPY_BACK", "SOFTWARE_3D_NOTE", "niivue", "patched_esm", "software_webgl"]

log = logging.getLogger(__name__)

#: The call in ipyniivue's widget.js that sends a loaded volume's voxels back: ``f(model, "img", nvimage.img.buffer,
#: dtype)`` (minified names differ between builds, the shape of the call does not)
NO_COPY_BACK = re.compile(
    r"\b[A-Za-z_$][\w$]*\(([A-Za-z_$][\w$]*),\"img\",([A-Za-z_$][\w$]*)\.img\.buffer,[A-Za-z_$][\w$]*\)"
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

    source = (Path(ipyniivue.__file__).parent / "static" / "widget.js").read_text(encoding="utf-8")
    found = NO_COPY_BACK.findall(source)
    if len(found) != 1:
        log.warning(
            "ipyniivue %s: its copy of each volume back to the kernel could not be switched off (the call was found "
            "%d times, expected once); the viewer works, but opening large volumes is slow",
            getattr(ipyniivue, "__version__", "?"),
            len(found),
        )
        return None
    return NO_COPY_BACK.sub("void 0", source)


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
