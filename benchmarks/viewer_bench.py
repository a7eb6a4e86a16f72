"""Browser viewer vs the PNG viewer, in headless Chromium on a Voila page: scroll step -> new slice painted, and
opening a case -> first picture.

    .venv/bin/python benchmarks/viewer_bench.py [--shape 512 512 300] [--steps 30] [--old-steps 8] [--update-md]

The case: a CT-like volume (int16 HU: body, noise, a bright lesion) with the model's mask and a heatmap in [0, 1],
written as NIfTI. Two Voila pages, one after the other, each in a fresh kernel and browser page:

* new: ``medimg.viz.view(image, {"mask": ..., "heatmap": ...})`` (NiiVue, WebGL by SwiftShader on the CPU). A
  scroll step is a wheel event dispatched on the axial tile; it counts as painted once the next animation frame
  has run and a pixel read back from the WebGL canvas (which waits for the drawing to finish).
* old: the review widget's still images (``ReviewWidget`` with the browser viewer switched off, as before issue
  29): a step is an ArrowRight on the slice slider; painted when the new PNG fires its ``load`` event.

First picture: seconds from the kernel starting ``view`` / ``ReviewWidget`` (reading the NIfTI files included) to
the browser showing the image (the viewer's loading line gone -- NiiVue has read the image and reported it, which
since the copy back to the kernel is switched off (:mod:`medimg.viz.viewer_widget`) happens as it is drawn -- / the
PNG shown); the test machine's clock is shared by kernel and browser.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section

from medimg.io.volume import Volume

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync",
         "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]  # fmt: skip

NEW_CELL = """import time
t0 = time.time()
from medimg.viz import view
v = view({image!r}, {{"mask": {mask!r}, "heatmap": {heat!r}}}, height=700, render_3d={render_3d})
t1 = time.time()
import ipywidgets as w
display(w.VBox([v.widget, w.HTML(f"<span class='t0'>{{t0}}</span> <span class='t1'>{{t1}}</span> "
                                 f"<span class='layers'>{{len(v.nv.volumes)}}</span>")]))"""

OLD_CELL = """import time
t0 = time.time()
import numpy as np
from medimg.explain.api import Explanation
from medimg.io import Volume, load
from medimg.review import FeedbackStore, ReviewWidget
ReviewWidget._browser_viewer = lambda self: None  # the still images alone, as the viewer was before issue 29
img = load({image!r})
ex = Explanation(image=img, heatmap=load({heat!r}), prediction=load({mask!r}), label=1, method="hirescam",
                 layer="-", checkpoint_sha256="0" * 64, input_sha256="0" * 64, sanity=None)
r = ReviewWidget(ex, case_id="bench", store=FeedbackStore({store!r}))
t1 = time.time()
import ipywidgets as w
display(w.VBox([r.widget, w.HTML(f"<span class='t0'>{{t0}}</span> <span class='t1'>{{t1}}</span>")]))"""

STEP_JS = """async ([x, y, n]) => {
  const canvas = document.querySelector('canvas');
  const gl = canvas.getContext('webgl2');
  const px = new Uint8Array(4), out = [];
  const frame = () => new Promise(r => requestAnimationFrame(() => r()));
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    canvas.dispatchEvent(new WheelEvent('wheel', {deltaY: i % 20 < 10 ? 100 : -100, clientX: x, clientY: y,
                                                 bubbles: true, cancelable: true}));
    await frame();
    gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
    out.push(performance.now() - t0);
    await new Promise(r => setTimeout(r, 50));
  }
  return out;
}"""

PAINTED_JS = """async () => {
  const gl = document.querySelector('canvas').getContext('webgl2');
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));
}"""


def make_case(folder: Path, shape: tuple[int, int, int]) -> dict[str, str]:
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape[:2]], indexing="ij")
    body = (x / 0.85) ** 2 + (y / 0.7) ** 2 <= 1
    image = np.where(body[..., None], 40, -1000).astype(np.int16) + rng.normal(0, 15, shape).astype(np.int16)
    zz = np.linspace(-1, 1, shape[2], dtype=np.float32)
    r2 = ((x - 0.4) ** 2 + y**2)[..., None] + (zz**2)[None, None, :]
    image[r2 < 0.02] += 100
    affine = np.diag([0.7, 0.7, 1.0, 1.0])
    paths = {}
    for name, arr in (("image", image), ("mask", (r2 < 0.02).astype(np.uint8)),
                      ("heat", np.exp(-r2 / 0.05).astype(np.float32))):  # fmt: skip
        paths[name] = str(Volume(arr, affine, {"modality": "CT"}).save(folder / f"{name}.nii.gz"))
    return paths


def _serve(notebook: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    token = secrets.token_hex(8)
    server = subprocess.Popen([sys.executable, "-m", "voila", str(notebook), "--no-browser", "--Voila.ip=127.0.0.1",
                               f"--port={port}", f"--token={token}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    for _ in range(240):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return server, f"http://127.0.0.1:{port}/?token={token}"
        time.sleep(0.5)
    server.kill()
    raise SystemExit("Voila did not start")


def _page(folder: Path, cell: str, run) -> dict[str, object]:  # type: ignore[no-untyped-def]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cell)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"bench-{secrets.token_hex(3)}.ipynb"
    nbformat.write(nb, path)
    server, url = _serve(path)
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(url, timeout=900_000, wait_until="commit")  # Voila runs the cell before the page arrives
            result = run(page)
            print(json.dumps(result), flush=True)
            browser.close()
            return result
    finally:
        server.terminate()
        server.wait(30)


def _t0(page) -> float:  # type: ignore[no-untyped-def]
    return float(page.locator(".t0").inner_text())


def _kernel_s(page) -> float:  # type: ignore[no-untyped-def]
    """Seconds the kernel took to build the viewer (read the files, pack and queue the volumes)."""
    return float(page.locator(".t1").inner_text()) - _t0(page)


def bench_new(page, steps: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    page.locator("canvas").first.wait_for(timeout=900_000)  # the viewer is on the page (its loading line too)
    canvas_s = time.time() - _t0(page)  # kernel, page sent, NiiVue's script started and its canvas made
    page.wait_for_function("!document.body.innerText.includes('loading the viewer')", timeout=900_000, polling=50)
    page.evaluate(PAINTED_JS)
    first = time.time() - _t0(page)
    # every layer drawn: the image alone first, then all layers once (counted by medimg's widget edit)
    layers = int(page.locator(".layers").inner_text())
    page.wait_for_function(f"(window.__medimgLayerRedraws || 0) >= {1 + layers}", timeout=900_000, polling=50)
    page.evaluate(PAINTED_JS)  # WebGL work is queued: painted once a frame after it reads a pixel back
    all_layers = time.time() - _t0(page)
    page.wait_for_timeout(1000)
    box = page.locator("canvas").first.bounding_box()
    x, y = box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.6  # inside the axial tile (lower left)
    page.evaluate(STEP_JS, [x, y, 2])  # warm-up: shaders compile on the first draws
    times = page.evaluate(STEP_JS, [x, y, steps])
    toggles = []  # the heatmap's box on and off: NiiVue redraws every layer into its overlay texture once
    for _ in range(3):
        before = page.evaluate("window.__medimgLayerRedraws")
        t_click = time.time()
        page.get_by_label("heatmap").click()
        page.wait_for_function(f"window.__medimgLayerRedraws > {before}", timeout=900_000, polling=20)
        page.evaluate(PAINTED_JS)
        toggles.append(time.time() - t_click)
    return {
        "first_s": first,
        "all_layers_s": all_layers,
        "kernel_s": _kernel_s(page),
        "canvas_s": canvas_s,
        "step_ms": times,
        "toggle_s": toggles,
    }


def bench_old(page, steps: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    picture = page.locator("img.widget-image").first
    picture.wait_for(state="visible", timeout=600_000)
    first = time.time() - _t0(page)
    page.evaluate("""() => { window.__steps = []; const img = document.querySelector('img.widget-image');
      document.addEventListener('keydown', () => { window.__t0 = performance.now(); }, true);
      img.addEventListener('load', () => window.__steps.push(performance.now() - window.__t0)); }""")
    handle = page.locator(".widget-slider .noUi-handle").nth(0)
    handle.focus()
    for i in range(steps):
        handle.press("ArrowRight")
        page.wait_for_function(f"window.__steps.length > {i}", timeout=600_000)
    return {"first_s": first, "kernel_s": _kernel_s(page), "step_ms": page.evaluate("window.__steps")}


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--old-steps", type=int, default=8)
    ap.add_argument("--update-md", action="store_true")
    args = ap.parse_args()
    shape = tuple(args.shape)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_case(folder, shape)  # type: ignore[arg-type]
        new = _page(folder, NEW_CELL.format(image=paths["image"], mask=paths["mask"], heat=paths["heat"],
                                            render_3d=True), lambda page: bench_new(page, args.steps))  # fmt: skip
        planes = _page(folder, NEW_CELL.format(image=paths["image"], mask=paths["mask"], heat=paths["heat"],
                                               render_3d=False), lambda page: bench_new(page, args.steps))  # fmt: skip
        old = _page(folder, OLD_CELL.format(image=paths["image"], mask=paths["mask"], heat=paths["heat"],
                                            store=str(folder / "r.sqlite")),
                    lambda page: bench_old(page, args.old_steps))  # fmt: skip
    rows = []
    for name, r in (("browser viewer (NiiVue, `medimg.viz.view`), 3 planes + 3D", new),
                    ("browser viewer, 3 planes (`render_3d=False`)", planes),
                    ("PNG viewer (kernel renders one plane)", old)):  # fmt: skip
        ms = list(r["step_ms"])  # type: ignore[call-overload]
        every = f"{r['all_layers_s']:.1f}" if "all_layers_s" in r else "(one picture)"
        toggle = f"{_p(list(r['toggle_s']), 50):.1f}" if "toggle_s" in r else "-"  # type: ignore[call-overload]
        rows.append(f"| {name} | {_p(ms, 50):.0f} | {_p(ms, 95):.0f} | {len(ms)} | {r['first_s']:.1f} | {every} "
                    f"| {r['kernel_s']:.1f} | {toggle} |")  # fmt: skip
    case = f"CT {shape[0]} x {shape[1]} x {shape[2]} int16 with the model's mask and a heatmap"
    load = os.getloadavg()[0]
    body = f"""Headless Chromium (Debian's), WebGL by SwiftShader on the CPU (no GPU), Voila page, 1300 x 700 px canvas;
{case}. Load average at the start: {load_start:.2f}, at the end: {load:.2f} (2 cores); first scroll steps (shader
compilation) dropped. Volumes are not copied back to the kernel (issue 29: ipyniivue's copy, about 400 MB here,
held the first picture for minutes), and each layer is drawn into NiiVue once, not on each of ipyniivue's 19 redraws
(36 layer redraws for this case before).

| viewer | scroll -> painted p50 ms | p95 ms | steps | first picture s | all layers s | kernel s | overlay on/off s |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Targets (issue 29): p95 under 50 ms per scroll step, first picture under 2 s.

Reproduce: `.venv/bin/python benchmarks/viewer_bench.py --update-md`"""
    print(body.replace("\t", ""))
    print(json.dumps({"new": new, "planes": planes, "old": old}))
    if args.update_md:
        update_section("Browser viewer (issue 29)", body.replace("\t", ""))


if __name__ == "__main__":
    main()
