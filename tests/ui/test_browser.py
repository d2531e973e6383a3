"""The console in a real browser: Playwright drives Debian's chromium against `aiapp ui` on 127.0.0.1.

Chromium comes from ``scripts/services.sh`` (Playwright's own browser download cannot reach its
host here). Screenshots of every page land in ``build/ui-screenshots/`` (or ``$AIAPP_UI_SCREENSHOTS``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_seed import REPO, Seeded

CHROMIUM = os.environ.get("AIAPP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("AIAPP_UI_SCREENSHOTS") or REPO / "build" / "ui-screenshots")

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (the ui-test extra)"
)
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"chromium not found at {CHROMIUM}: run scripts/services.sh to install it",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(seeded: Seeded) -> tuple[subprocess.Popen[bytes], str] | str:
    """Start `aiapp ui` on a free port; the process and its URL, or its output when it exited."""
    port = _free_port()
    env = {**os.environ, "AIAPP_HOME": str(seeded.home)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiapp.cli",
            "ui",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--root",
            str(seeded.root),
        ],
        cwd=seeded.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(base + "/health", timeout=1) as reply:
                if reply.status == 200:
                    return proc, base
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                return proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.2)


@pytest.fixture
def console(seeded: Seeded) -> Iterator[tuple[str, Seeded]]:
    """`aiapp ui` serving the seeded store, as a separate process (a second port if the first is taken)."""
    started = _start(seeded)
    if isinstance(started, str):
        started = _start(seeded)
    if isinstance(started, str):
        pytest.fail(f"aiapp ui did not start: {started}")
    proc, base = started
    try:
        yield base, seeded
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def page(console: tuple[str, Seeded]) -> Iterator[object]:
    sync = playwright_sync.sync_playwright().start()
    try:
        browser = sync.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
    except Exception as exc:  # a broken chromium install: say why instead of failing every test
        sync.stop()
        pytest.skip(f"chromium at {CHROMIUM} does not start: {exc}")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(15_000)
    yield page
    browser.close()
    sync.stop()


def _shot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_the_dashboard_renders_its_charts(page: object, console: tuple[str, Seeded]) -> None:
    base, _ = console
    page.goto(base + "/")  # type: ignore[attr-defined]
    charts = page.locator("svg.chart")  # type: ignore[attr-defined]
    assert charts.count() == 7
    assert page.locator("#chart-requests circle.point").count() > 0  # type: ignore[attr-defined]
    assert page.locator("#chart-latency polyline").count() >= 1  # type: ignore[attr-defined]
    assert page.locator("#total-requests").inner_text() == "72"  # type: ignore[attr-defined]
    box = page.locator("#chart-latency").bounding_box()  # type: ignore[attr-defined]
    assert box is not None and box["width"] > 300 and box["height"] > 100
    page.select_option("select[name=route]", "openai")  # type: ignore[attr-defined]
    page.click("form.filters button")  # type: ignore[attr-defined]
    page.wait_for_url("**route=openai**")  # type: ignore[attr-defined]
    assert page.locator("#total-requests").inner_text() == "30"  # type: ignore[attr-defined]
    _shot(page, "dashboard")


def test_a_trace_opens_from_the_list(page: object, console: tuple[str, Seeded]) -> None:
    base, seeded = console
    page.goto(base + "/traces")  # type: ignore[attr-defined]
    assert page.locator("a.trace-link").count() == 50  # type: ignore[attr-defined]
    _shot(page, "traces")
    page.fill("input[name=text]", "logs stored? (59)")  # type: ignore[attr-defined]
    page.click("form.filters button")  # type: ignore[attr-defined]
    page.wait_for_url("**text=**")  # type: ignore[attr-defined]
    assert page.locator("a.trace-link").count() == 1  # type: ignore[attr-defined]
    page.locator("a.trace-link").first.click()  # type: ignore[attr-defined]
    page.wait_for_url(f"**/traces/{seeded.trace_ids[-1]}")  # type: ignore[attr-defined]
    assert page.locator("tr.span-row").count() == 3  # type: ignore[attr-defined]
    assert "docs/api.md" in page.locator("table.chunks").first.inner_text()  # type: ignore[attr-defined]
    assert page.locator("table.guards").count() == 1  # type: ignore[attr-defined]
    _shot(page, "trace")


def test_two_runs_compare(page: object, console: tuple[str, Seeded]) -> None:
    base, _ = console
    page.goto(base + "/evals")  # type: ignore[attr-defined]
    _shot(page, "evals")
    page.click("#compare-support")  # type: ignore[attr-defined]
    page.wait_for_selector("#deltas")  # type: ignore[attr-defined]
    text = page.locator("#deltas").inner_text()  # type: ignore[attr-defined]
    assert "exact_match" in text and "-0.500" in text  # B, the newest run, is right on half the cases
    assert page.locator("#changed tr").count() == 1 + 3  # type: ignore[attr-defined]
    assert page.locator("#side-by-side tr").count() == 1 + 6  # type: ignore[attr-defined]
    _shot(page, "compare")


def test_a_rater_grades_three_cases_with_the_keyboard(page: object, console: tuple[str, Seeded]) -> None:
    base, seeded = console
    file = seeded.root / "review" / "support" / "ratings" / "carol.jsonl"
    assert not file.exists()
    page.goto(base + "/review/support?rater=carol")  # type: ignore[attr-defined]
    judge = page.locator("tr.judge[data-judge=judge_rubric]")  # type: ignore[attr-defined]
    assert judge.locator(".agreement-value").inner_text() == "—"
    assert judge.locator(".may-gate").inner_text() == "no"
    page.keyboard.press("5")  # type: ignore[attr-defined]
    page.wait_for_selector("body[data-saved='1']")  # type: ignore[attr-defined]
    page.keyboard.press("c")  # type: ignore[attr-defined]
    page.keyboard.type("clear and correct")  # type: ignore[attr-defined]
    page.keyboard.press("Escape")  # type: ignore[attr-defined]
    page.keyboard.press("4")  # type: ignore[attr-defined]
    page.wait_for_selector("body[data-saved='2']")  # type: ignore[attr-defined]
    page.keyboard.press("2")  # type: ignore[attr-defined]
    page.wait_for_selector("body[data-saved='3']")  # type: ignore[attr-defined]
    rows = [json.loads(line) for line in file.read_text().splitlines()]
    assert [(r["case_id"], r["score"]) for r in rows] == [("q1", 5.0), ("q2", 4.0), ("q3", 2.0)]
    assert rows[1]["comment"] == "clear and correct"
    # The panel now measures the judge against carol's three grades (which match it: 5, 4, 2).
    judge = page.locator("tr.judge[data-judge=judge_rubric]")  # type: ignore[attr-defined]
    assert judge.locator(".agreement-value").inner_text() == "1.000"
    assert judge.locator(".may-gate").inner_text() == "yes"
    assert page.locator("#rated-count").inner_text() == "3"  # type: ignore[attr-defined]
    _shot(page, "review")


def test_a_prompt_diff_renders(page: object, console: tuple[str, Seeded]) -> None:
    base, _ = console
    page.goto(base + "/prompts")  # type: ignore[attr-defined]
    _shot(page, "prompts")
    page.click("a.diff-link")  # type: ignore[attr-defined]
    page.wait_for_selector("#diff")  # type: ignore[attr-defined]
    assert page.locator("#diff tr.add").count() > 0 and page.locator("#diff tr.del").count() > 0  # type: ignore[attr-defined]
    _shot(page, "prompt-diff")
    page.goto(base + "/prompts/support_answer?ref=production")  # type: ignore[attr-defined]
    page.fill("textarea[name=var_question]", "Where are the logs?")  # type: ignore[attr-defined]
    page.click("#preview-form button")  # type: ignore[attr-defined]
    page.wait_for_selector("pre.message")  # type: ignore[attr-defined]
    assert "Where are the logs?" in page.locator("#rendered").inner_text()  # type: ignore[attr-defined]
    _shot(page, "prompt")
