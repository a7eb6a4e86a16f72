"""Two radiologists read the same cases at once on the Voila page, in a real browser (headless Chromium).

The page (notebooks/review-app.ipynb, as `make review` serves it) runs on 127.0.0.1 behind a token. Reader A
and reader B (a second browser context: its own cookies and its own kernel) enter their names, get the three
cases in different orders and answer them; both row sets are in the one SQLite store, and the exported report
shows both readers and their kappa. The case list also names a missing file: the page says it was skipped and
the report lists it. The explanations are precomputed (the batch job's folder layout) from small synthetic
volumes, so no model is trained here (tests/test_review_session.py runs the real batch job).
Screenshots go to outputs/browser/.
"""

from __future__ import annotations

import http.client
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from debian_support import apt_install
from tests_support import synthetic_explanation

from medimg.explain.batch import case_dir, precomputed, save_explanation
from medimg.review import FeedbackStore, export_report, read_worklist

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "outputs" / "browser"
CHROMIUM = "/usr/bin/chromium"
CASES = ("case-a", "case-b", "case-c")
# Two readers whose blinded orders differ on these three cases (checked in the test), and their verdicts:
# A and B agree on two cases of three; by hand, p_o = 2/3, p_e = (2*1 + 1*1 + 0*1) / 9 = 1/3, kappa = 1/2.
VERDICTS = {
    "Dr. Ada": {"case-a": "agree", "case-b": "disagree", "case-c": "agree"},
    "Dr. Bo": {"case-a": "agree", "case-b": "disagree", "case-c": "partly"},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status_without_token(port: int) -> int:
    """HTTP status of the page fetched without the token (redirects not followed)."""
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        con.request("GET", "/")
        return con.getresponse().status
    finally:
        con.close()


@pytest.fixture(scope="module")
def page_server(tmp_path_factory):
    why = apt_install(["chromium"], lambda: os.path.exists(CHROMIUM))
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("session")
    rows = ["case_id,image"]
    for i, case in enumerate(CASES):
        ex = synthetic_explanation(i)
        ex.image.save(root / f"{case}.nii.gz")
        save_explanation(ex, case_dir(root / "explanations", case))
        rows.append(f"{case},{case}.nii.gz")
    rows.append("case-gone,gone.nii.gz")  # listed, but the file is missing
    (root / "cases.csv").write_text("\n".join(rows) + "\n")
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "MEDIMG_REVIEW_CASES": str(root / "cases.csv"),
        "MEDIMG_REVIEW_EXPLANATIONS": str(root / "explanations"),
        "MEDIMG_REVIEW_STORE": str(root / "r.sqlite"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "voila", str(ROOT / "notebooks" / "review-app.ipynb"), "--no-browser",
         "--Voila.ip=127.0.0.1", f"--port={port}", f"--token={token}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        with socket.socket() as probe:  # listening? (a GET of the page would start a kernel each time)
            if server.poll() is None and probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("Voila did not start on 127.0.0.1")
    yield {"url": url, "port": port, "token": token, "root": root}
    server.terminate()
    server.wait(30)


def _read_cases(page, reader: str) -> list[str]:
    """Enter the name, answer every case in the order the page gives; returns that order."""
    page.get_by_placeholder("your name").fill(reader)
    page.get_by_role("button", name="Start reading").click()
    page.get_by_text("case 1 of 3").wait_for(timeout=120_000)
    page.get_by_text("1 case(s) skipped").wait_for()  # the missing file is announced, not hidden
    seen = []
    for n in range(1, 4):
        page.get_by_text(f"case {n} of 3").wait_for(timeout=30_000)
        case = page.locator("h3").filter(has_text="case-").first.inner_text().strip()
        seen.append(case)
        page.get_by_role("button", name=VERDICTS[reader][case], exact=True).click()
        page.get_by_role("button", name="Save answer").click()
        page.get_by_text("saved answer #").wait_for(timeout=30_000)
        page.get_by_text(f"({n} answered by {reader})").wait_for(timeout=30_000)
        page.screenshot(path=str(SHOTS / f"session-{reader.split()[-1].lower()}-{n}.png"), full_page=True)
        if n < 3:
            page.get_by_role("button", name="next").click()
    return seen


def test_two_readers_session_in_the_browser(page_server):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    url, token = page_server["url"], page_server["token"]
    assert _status_without_token(page_server["port"]) in (302, 403)  # no token, no page (a login redirect)
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
        pages = {}
        for reader in VERDICTS:  # two contexts: two readers' own cookies, pages and kernels, open side by side
            pages[reader] = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            pages[reader].goto(f"{url}/?token={token}")
        for page in pages.values():
            page.get_by_placeholder("your name").wait_for(timeout=120_000)
        ada = pages["Dr. Ada"]
        ada.get_by_role("button", name="Start reading").click()  # no name yet: a message, no traceback
        ada.get_by_text("enter your name first").wait_for(timeout=30_000)
        ada.screenshot(path=str(SHOTS / "session-0-no-name.png"), full_page=True)
        try:
            orders = {reader: _read_cases(page, reader) for reader, page in pages.items()}
        except Exception:
            for reader, page in pages.items():
                page.screenshot(path=str(SHOTS / f"session-failed-{reader.split()[-1].lower()}.png"), full_page=True)
            raise
        browser.close()

    assert sorted(orders["Dr. Ada"]) == sorted(orders["Dr. Bo"]) == list(CASES)
    assert orders["Dr. Ada"] != orders["Dr. Bo"]  # blinded: each reader has an order of their own
    root = page_server["root"]
    store = FeedbackStore(root / "r.sqlite")
    rows = store.all()
    assert len(rows) == 6
    assert {(r.reviewer, r.case_id, r.verdict) for r in rows} == {
        (reader, case, verdict) for reader, answers in VERDICTS.items() for case, verdict in answers.items()
    }
    worklist = read_worklist(root / "cases.csv")
    cases = [(c.case_id, precomputed(root / "explanations", c.case_id)) for c in worklist.cases]
    text = export_report(cases, root / "report.html", store, skipped=worklist.skipped).read_text()
    assert (
        "Dr. Ada &amp; Dr. Bo</td><td>Cohen&#x27;s kappa" in text
        or "Dr. Ada &amp; Dr. Bo</td><td>Cohen's kappa" in text
    )
    assert "<td>0.500, 95 % CI" in text  # the kappa computed by hand above
    assert "case-gone: image file missing" in text
    (SHOTS / "session-report.html").write_text(text)
