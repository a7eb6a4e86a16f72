"""The radiologist's loop in a real browser: JupyterLab + headless Chromium (Debian's), driven by Playwright.

Opens 03-review-heatmaps.ipynb (a reading session over one held-out case), runs all cells, finds the interactive
viewer's canvas, moves the slice slider of the still-image tab and checks the picture changed, submits a verdict
through the form and finds it in the SQLite store with the checkpoint's hash. Screenshots go to outputs/browser/.
Chromium is installed with apt when missing; the test skips (saying why) only where apt can't.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from debian_support import apt_install
from tests_support import SMALL_FIT

from medimg.data.phantoms import make_phantom_msd
from medimg.tasks.lightning_cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "outputs" / "browser"
CHROMIUM = "/usr/bin/chromium"


def _ensure_chromium() -> str:
    why = apt_install(["chromium"], lambda: os.path.exists(CHROMIUM))
    if why:
        pytest.skip(why)
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    chromium = _ensure_chromium()
    root = tmp_path_factory.mktemp("lab")
    data = make_phantom_msd(root / "Task97", n_cases=6, n_test=1, seed=11)
    run_cli(["fit", *SMALL_FIT, "--data.dataset_dir", str(data), "--trainer.max_epochs", "3",
             "--trainer.default_root_dir", str(root / "run")])  # fmt: skip
    ckpt = root / "run" / "checkpoints" / "last.ckpt"
    store = root / "reviews.sqlite"
    nb = json.loads((ROOT / "notebooks" / "03-review-heatmaps.ipynb").read_text())
    params = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    params["source"] = (
        f"checkpoint = {str(ckpt)!r}\ncases = {str(data / 'imagesTs')!r}\nprecomputed = None\n"
        f"reader = 'Dr. Browser'\nstore = {str(store)!r}\nreport_html = {str(root / 'report.html')!r}\n"
    )
    (root / "review.ipynb").write_text(json.dumps(nb))
    port, token = _free_port(), secrets.token_hex(16)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--ServerApp.port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly", "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("JupyterLab did not start on 127.0.0.1")
    yield {"url": url, "token": token, "chromium": chromium, "ckpt": ckpt, "store": store}
    server.terminate()
    server.wait(30)


def test_radiologist_reviews_a_case_in_the_browser(lab):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=lab["chromium"], headless=True, args=flags)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(f"{lab['url']}/lab/tree/review.ipynb?token={lab['token']}")
        page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
        page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=120_000)  # kernel connected
        page.wait_for_timeout(1000)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        canvas = page.locator("canvas").first  # the interactive viewer (WebGL) opens first
        try:
            canvas.wait_for(state="visible", timeout=240_000)
            page.get_by_role("tab", name="Still images").click()  # the kernel-drawn PNG view, on its own tab
            picture = page.locator("img.widget-image:visible").first
            picture.wait_for(state="visible", timeout=60_000)
        except Exception:
            page.screenshot(path=str(SHOTS / "review-failed.png"), full_page=True)
            raise
        page.wait_for_timeout(1000)
        page.screenshot(path=str(SHOTS / "review-1-opened.png"), full_page=True)
        before = picture.screenshot()

        # the slice slider (plane is a button row), on the still-image tab (the viewer tab's sliders are hidden)
        handle = page.locator(".widget-slider .noUi-handle:visible").nth(0)
        handle.focus()
        for _ in range(6):
            handle.press("ArrowRight")
        page.wait_for_timeout(3000)
        after = picture.screenshot()
        page.screenshot(path=str(SHOTS / "review-2-slice-moved.png"), full_page=True)
        assert after != before, "moving the slice slider did not change the rendered image"

        page.get_by_role("button", name="disagree").click()
        page.get_by_text("case 1 of 1").wait_for()  # the session's reader is set by the notebook's parameters
        page.get_by_placeholder("What is right or wrong about the map?").fill("heat spills into the body wall")
        page.get_by_role("button", name="Save answer").click()
        page.get_by_text("saved answer #").wait_for(timeout=30_000)
        page.screenshot(path=str(SHOTS / "review-3-saved.png"), full_page=True)
        browser.close()

    from medimg.review import FeedbackStore

    (row,) = FeedbackStore(lab["store"]).all()
    assert (row.case_id, row.verdict, row.reviewer) == ("Phantom_006", "disagree", "Dr. Browser")
    assert row.checkpoint_sha256 == hashlib.sha256(lab["ckpt"].read_bytes()).hexdigest()
