"""The browser viewer in a real browser: a Voila page showing ``medimg.viz.view`` of a CT phantom with the model's
mask and a heatmap, in headless Chromium (Debian's) with WebGL drawn by SwiftShader, driven by Playwright.

JupyterLab runs the same notebook (drawn, click and wheel read back).

What a radiologist does, checked on the picture and on what the kernel reads back (the read-out line under the
picture is written by the kernel from NiiVue's crosshair messages): the planes are drawn with the overlays; a
blob on the patient's left is on the screen's right in radiological convention and moves to the left in
neurological; a click in the axial view moves the coronal and sagittal slices; one wheel step moves the axial
slice by one; a right-drag from air into the body sets the window to -1000 .. 40 HU. Screenshots go to
outputs/browser/.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from debian_support import apt_install
from viewer_phantom import write_viewer_phantom

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "outputs" / "browser"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync",
         "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]  # fmt: skip
READOUT = re.compile(r"slices axi (\d+) cor (\d+) sag (\d+) \| value (-?\d+) HU")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: a second viewer on the Voila page: the body split into two segments, each in its own colour (a DICOM SEG's
#: Recommended Display CIELab Value (0062,000D) becomes ``meta["segments"][n]["color"]`` when one is read)
SEG_CELL = """import numpy as np
from medimg.io import Volume, load
img = load({image!r})
body = np.asarray(img.array) > -500
half = np.arange(body.shape[0])[:, None, None] < body.shape[0] // 2
seg = np.where(body & half, 1, np.where(body, 2, 0)).astype(np.uint8)
colours = {{1: {{"label": "left part", "color": "#e61e1e"}}, 2: {{"label": "right part", "color": "#1e1ee6"}}}}
view(img, {{"seg": Volume(seg, img.affine, {{"segments": colours}})}}, render_3d=False)"""


def _viewer_notebook(tmp_path_factory, with_segments: bool = False) -> Path:
    why = apt_install(["chromium"], lambda: os.path.exists(CHROMIUM))
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("viewer")
    paths = write_viewer_phantom(root)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from medimg.viz import view\n"
        f"view({str(paths['image'])!r}, {{'mask': {str(paths['mask'])!r}, 'heatmap': {str(paths['heatmap'])!r}}})"
    )]  # fmt: skip
    if with_segments:
        nb.cells.append(nbformat.v4.new_code_cell(SEG_CELL.format(image=str(paths["image"]))))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "viewer.ipynb")
    return root / "viewer.ipynb"


def _serve(command: list[str], port: int):
    """Start a server on 127.0.0.1:``port``; yields once it listens, stops it afterwards."""
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(120):
        with socket.socket() as probe:  # listening? (a GET of the page would start a kernel each time)
            if server.poll() is None and probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.5)
    else:
        server.kill()
        pytest.fail(f"{command[2]} did not start on 127.0.0.1")
    yield
    server.terminate()
    server.wait(30)


@pytest.fixture(scope="module")
def viewer_page(tmp_path_factory):
    notebook = _viewer_notebook(tmp_path_factory, with_segments=True)
    port, token = _free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "voila", str(notebook), "--no-browser", "--Voila.ip=127.0.0.1",
               f"--port={port}", f"--token={token}"]  # fmt: skip
    for _ in _serve(command, port):
        yield f"http://127.0.0.1:{port}/?token={token}"


@pytest.fixture(scope="module")
def lab_page(tmp_path_factory):
    notebook = _viewer_notebook(tmp_path_factory)
    port, token = _free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--ServerApp.port={port}",
               "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={notebook.parent}",
               "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly", "--allow-root"]  # fmt: skip
    for _ in _serve(command, port):
        yield f"http://127.0.0.1:{port}/lab/tree/{notebook.name}?token={token}"


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _quadrants(canvas: np.ndarray) -> dict[str, tuple[int, int, int, int]]:
    """NiiVue's 2 x 2 grid (coronal | sagittal over axial | 3D) inside the drawn area: (x0, y0, x1, y1) each."""
    ys, xs = np.nonzero(canvas.max(axis=2) > 0)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    xm, ym = (x0 + x1) // 2, (y0 + y1) // 2
    return {"coronal": (x0, y0, xm, ym), "sagittal": (xm, y0, x1, ym), "axial": (x0, ym, xm, y1)}


def _bright_centre_x(tile: np.ndarray) -> float:
    """Mean column of the white (blob) pixels relative to the mean column of the body, in pixels."""
    white = (tile > 225).all(axis=2)
    body = (tile.max(axis=2) > 40) & ~white
    assert white.sum() > 20 and body.sum() > 200, "blob or body not drawn"
    return float(np.nonzero(white)[1].mean() - np.nonzero(body)[1].mean())


def _readout(page) -> tuple[int, ...]:
    text = page.get_by_text("slices axi").inner_text()
    m = READOUT.search(text)
    assert m, text
    return tuple(int(g) for g in m.groups())


def _wait_readout_change(page, before) -> tuple[int, ...]:
    for _ in range(40):
        page.wait_for_timeout(250)
        now = _readout(page)
        if now != before:
            return now
    return _readout(page)


def test_viewer_in_voila(viewer_page):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        try:
            page.goto(viewer_page)
            canvas = page.locator("canvas").first
            canvas.wait_for(timeout=120_000)
            page.get_by_text("window -160 .. 240 HU").first.wait_for(timeout=60_000)
            page.wait_for_function("!document.body.innerText.includes('loading the viewer')", timeout=60_000)
            page.wait_for_timeout(1500)
            _check_segment_colours(page.locator("canvas").nth(1))
            # each layer taken in once, plus the image alone first: (1 + 4) + (1 + 2); stock ipyniivue redraws
            # every loaded layer 5-6 times per volume added (36 + 10 here), most of the first picture's time
            assert page.evaluate("window.__medimgLayerRedraws") <= 10, "layers redrawn more than once on loading"
            _check_viewer(page, canvas)
            _check_3d_tile(page, canvas)
            # ipyniivue logs each 5 MB chunk of a volume it copies back to the kernel; the viewer switched that off
            assert not [m for m in console if "sendChunkedData" in m], "volumes were copied back to the kernel"
        except Exception:
            page.screenshot(path=str(SHOTS / "viewer-failed.png"), full_page=True)
            raise
        finally:
            browser.close()


def _check_viewer(page, canvas) -> None:
    shot = _pixels(canvas.screenshot(path=str(SHOTS / "viewer-1-opened.png")))
    assert (shot.max(axis=2) > 0).mean() > 0.1, "the canvas is (nearly) all background"
    tiles = _quadrants(shot)
    x0, y0, x1, y1 = tiles["axial"]
    with_overlays = shot[y0:y1, x0:x1]
    page.get_by_label("model's mask").uncheck()
    page.get_by_label("heatmap").uncheck()
    page.wait_for_timeout(1500)
    plain = _pixels(canvas.screenshot(path=str(SHOTS / "viewer-2-no-overlays.png")))[y0:y1, x0:x1]
    assert np.abs(with_overlays - plain).sum(axis=2).astype(bool).sum() > 100, "mask and heatmap not visible"
    # radiological: the blob on the patient's left is right of the body's middle; neurological: left of it
    assert _bright_centre_x(plain) > 5
    page.locator(".medimg-viewer").first.get_by_role("button", name="neurological").click()
    page.wait_for_timeout(1500)
    neuro = _pixels(canvas.screenshot(path=str(SHOTS / "viewer-3-neurological.png")))[y0:y1, x0:x1]
    assert _bright_centre_x(neuro) < -5
    page.locator(".medimg-viewer").first.get_by_role("button", name="radiological").click()
    page.wait_for_timeout(1000)

    box = canvas.bounding_box()
    ax_left, ax_top, w, h = box["x"] + x0, box["y"] + y0, x1 - x0, y1 - y0
    page.mouse.click(ax_left + 0.5 * w, ax_top + 0.5 * h)
    page.get_by_text("slices axi").wait_for(timeout=30_000)
    first = _readout(page)
    page.mouse.click(ax_left + 0.62 * w, ax_top + 0.35 * h)  # right of and above the first click
    moved = _wait_readout_change(page, first)
    assert moved[0] == first[0], "a click in the axial view changed the axial slice"
    assert moved[2] < first[2], "sagittal slice did not move towards the patient's left (screen right)"
    assert moved[1] > first[1], "coronal slice did not move anteriorly (screen up)"

    page.mouse.move(ax_left + 0.5 * w, ax_top + 0.5 * h)
    page.mouse.wheel(0, 100)
    scrolled = _wait_readout_change(page, moved)
    assert abs(scrolled[0] - moved[0]) == 1 and scrolled[1:3] == moved[1:3], (moved, scrolled)

    _check_zoom(page, canvas, (x0, y0, x1, y1), scrolled)

    # right-drag a box from the air left of the body into the body: NiiVue sets the window to its range
    page.mouse.move(ax_left + 0.03 * w, ax_top + 0.75 * h)
    page.mouse.down(button="right")
    page.mouse.move(ax_left + 0.35 * w, ax_top + 0.8 * h, steps=6)
    page.mouse.up(button="right")
    page.get_by_text("window -1000 .. 40 HU").wait_for(timeout=30_000)
    page.screenshot(path=str(SHOTS / "viewer-4-windowed.png"), full_page=True)


def _check_3d_tile(page, canvas) -> None:
    """SwiftShader draws WebGL on the CPU here: the 3D tile is left out and the page says so; ticking 3D adds it
    (the lower right quarter of the grid gets drawn)."""
    viewer = page.locator(".medimg-viewer").first
    viewer.get_by_text("draws WebGL on the CPU").wait_for(timeout=30_000)
    shot = _pixels(canvas.screenshot())
    x0, y0, x1, y1 = _quadrants(shot)["axial"]
    # where the 3D tile goes, away from the edges (the axial crosshair's end, the sagittal tile above)
    right = (x1 + (x1 - x0) // 5, y0 + (y1 - y0) // 4, x1 + (x1 - x0), y1 - (y1 - y0) // 8)
    assert (shot[right[1] : right[3], right[0] : right[2]].max(axis=2) > 40).mean() < 0.01, "a 3D tile was drawn"
    viewer.get_by_label("3D").check()
    page.wait_for_timeout(2500)
    shot = _pixels(canvas.screenshot(path=str(SHOTS / "viewer-8-3d-ticked.png")))
    assert (shot[right[1] : right[3], right[0] : right[2]].max(axis=2) > 40).mean() > 0.05, "no 3D tile drawn"


def _check_segment_colours(canvas) -> None:
    """The second viewer's segments in their own colours on the screen: the patient's left part (screen right in
    radiological convention) red, the right part blue, over the gray body."""
    canvas.scroll_into_view_if_needed()
    shot = _pixels(canvas.screenshot(path=str(SHOTS / "viewer-segments.png")))
    x0, y0, x1, y1 = _quadrants(shot)["axial"]
    tile = shot[y0:y1, x0:x1]
    inside = tile.max(axis=2) > 60  # body with segments (air is black)
    cols = np.nonzero(inside)[1]
    middle = (cols.min() + cols.max()) / 2
    left_of_screen = inside & (np.arange(tile.shape[1])[None, :] < middle - 3)
    right_of_screen = inside & (np.arange(tile.shape[1])[None, :] > middle + 3)
    red_minus_blue = tile[..., 0] - tile[..., 2]
    assert np.median(red_minus_blue[right_of_screen]) > 60, "segment 1 (patient's left) not red on screen right"
    assert np.median(red_minus_blue[left_of_screen]) < -60, "segment 2 (patient's right) not blue on screen left"


def _check_zoom(page, canvas, tile, readout) -> None:
    """With the wheel set to zoom, a wheel step enlarges the body in the axial tile and leaves the slice; reset
    zoom brings the first picture back."""
    x0, y0, x1, y1 = tile

    def body_pixels(name: str) -> int:
        return int((_pixels(canvas.screenshot(path=str(SHOTS / name)))[y0:y1, x0:x1].max(axis=2) > 40).sum())

    before = body_pixels("viewer-5-before-zoom.png")
    page.locator(".medimg-viewer").first.get_by_role("button", name="zoom", exact=True).click()
    page.wait_for_timeout(500)
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + (x0 + x1) / 2, box["y"] + (y0 + y1) / 2)
    for _ in range(3):
        page.mouse.wheel(0, -100)
        page.wait_for_timeout(300)
    page.wait_for_timeout(1000)
    zoomed = body_pixels("viewer-6-zoomed.png")
    assert zoomed > 1.2 * before, (before, zoomed)
    assert _readout(page) == readout, "zooming moved the crosshair"
    page.locator(".medimg-viewer").first.get_by_role("button", name="reset zoom").click()
    page.locator(".medimg-viewer").first.get_by_role("button", name="scroll", exact=True).click()
    page.wait_for_timeout(1500)
    back = body_pixels("viewer-7-zoom-reset.png")
    assert abs(back - before) < 0.05 * before, (before, back)


def test_viewer_in_jupyterlab(lab_page):
    """The same notebook run in JupyterLab: the planes are drawn, a click and a wheel step are read back."""
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        try:
            page.goto(lab_page)
            page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=120_000)
            page.wait_for_timeout(1000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            canvas = page.locator(".jp-OutputArea canvas").first
            canvas.wait_for(timeout=120_000)
            page.get_by_text("window -160 .. 240 HU").wait_for(timeout=60_000)
            page.get_by_text("loading the viewer").wait_for(state="detached", timeout=60_000)
            page.wait_for_timeout(1500)
            shot = _pixels(canvas.screenshot(path=str(SHOTS / "viewer-lab-1-opened.png")))
            assert (shot.max(axis=2) > 0).mean() > 0.1, "the canvas is (nearly) all background"
            x0, y0, x1, y1 = _quadrants(shot)["axial"]
            box = canvas.bounding_box()
            left, top = box["x"] + x0, box["y"] + y0
            page.mouse.click(left + 0.5 * (x1 - x0), top + 0.5 * (y1 - y0))
            page.get_by_text("slices axi").wait_for(timeout=30_000)
            first = _readout(page)
            page.mouse.wheel(0, -100)
            scrolled = _wait_readout_change(page, first)
            assert abs(scrolled[0] - first[0]) == 1 and scrolled[1:3] == first[1:3], (first, scrolled)
        except Exception:
            page.screenshot(path=str(SHOTS / "viewer-lab-failed.png"), full_page=True)
            raise
        finally:
            browser.close()
