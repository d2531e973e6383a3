"""The console's pages over a seeded store, through Starlette's test client (no browser)."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from ui_seed import Seeded

from aiapp.config import Settings
from aiapp.errors import ConfigError
from aiapp.evals._review import load_ratings, ratings_path, save_rating
from aiapp.ui import check_binding, create_app

H = {"X-Aiapp-UI": "1"}


def _client(seeded: Seeded, token: str | None = None) -> TestClient:
    settings = Settings()
    settings.home = seeded.home
    return TestClient(create_app(settings=settings, root=seeded.root, token=token))


def test_the_dashboard_totals_and_charts_come_from_the_store(seeded: Seeded) -> None:
    page = _client(seeded).get("/").text
    assert re.search(r'id="total-requests">72<', page)  # 60 seeded calls and the runs' 12 judge calls
    assert page.count("<svg class='chart'") == 7
    assert "chart-latency" in page and "<polyline" in page
    assert ">12<" in page  # guard triggers: every fifth call redacted an email
    filtered = _client(seeded).get("/", params={"route": "openai"}).text
    assert re.search(r'id="total-requests">30<', filtered)


def test_the_trace_list_filters_and_a_trace_shows_its_spans(seeded: Seeded) -> None:
    client = _client(seeded)
    errors = client.get("/traces", params={"status": "error"}).text
    assert errors.count("class='trace-link'") + errors.count('class="trace-link"') == 5  # n % 13 == 0
    text = client.get("/traces", params={"text": "rotate"}).text
    assert text.count('class="trace-link"') == 20
    negative = client.get("/traces", params={"feedback": "negative"}).text
    assert negative.count('class="trace-link"') == 5
    trace_id = seeded.trace_ids[7]
    page = client.get(f"/traces/{trace_id[:10]}").text
    assert trace_id in page and page.count('class="span-row') == 4  # app, retrieval, llm, tool
    assert "docs/api.md" in page and "api-3" in page  # retrieved chunks with their sources
    assert "calculator" in page and "2+2" in page  # the tool call
    assert "pii" in page and "Answer from the context." in page  # guard verdict, captured input
    assert client.get("/traces/nope-not-there").status_code == 404


def test_runs_list_report_and_compare(seeded: Seeded) -> None:
    client = _client(seeded)
    index = client.get("/evals").text
    assert all(run in index for run in seeded.runs)
    good, half = seeded.runs
    report = client.get(f"/evals/support/{half}").text
    cases = re.findall(r'<tr class="case ([a-z ]*)"><td class="mono">(q\d)', report)
    # Failures first (q2, q4, q6 answer "I don't know"; the judge fails q3), each group worst mean first.
    assert [c for _, c in cases] == ["q4", "q6", "q2", "q3", "q5", "q1"]
    assert all("fail" in k for k, _ in cases[:4]) and not any("fail" in k for k, _ in cases[4:])
    compare = client.get("/evals/support/compare", params={"a": good, "b": half}).text
    assert "-0.500" in compare  # exact_match: 1.0 → 0.5
    assert compare.count("exact_match: pass → fail") == 3


def test_prompts_list_preview_and_diff(seeded: Seeded) -> None:
    client = _client(seeded)
    index = client.get("/prompts").text
    assert "support_answer" in index and "production → v2" in index
    preview = client.get(
        "/prompts/support_answer", params={"ref": "v2", "var_question": "Why is the sky blue?"}
    ).text
    assert "Why is the sky blue?" in preview and 'class="message"' in preview
    diff = client.get("/prompts/support_answer/diff", params={"a": "baseline", "b": "production"}).text
    assert 'class="add"' in diff and 'class="del"' in diff and "support_answer@v1" in diff


def test_grading_writes_one_file_per_rater_and_updates_agreement(seeded: Seeded) -> None:
    client = _client(seeded)
    for key, score in (("q1", 5), ("q2", 4), ("q3", 2)):
        reply = client.post(
            "/api/review/support/rate", json={"rater": "alice", "key": key, "score": score}, headers=H
        )
        assert reply.status_code == 200, reply.text
    panel = reply.json()["panel"]
    assert "3</span> ratings" in panel and "judge <b>judge_rubric</b>" in panel
    lines = ratings_path(seeded.root, "support", "alice").read_text().splitlines()
    assert [json.loads(line)["case_id"] for line in lines] == ["q1", "q2", "q3"]
    assert (
        client.post(
            "/api/review/support/rate", json={"rater": "alice", "key": "q1", "score": 9}, headers=H
        ).status_code
        == 400
    )
    assert (
        client.post("/api/review/support/rate", json={"rater": "alice", "key": "q1", "score": 3}).status_code
        == 403
    )
    listing = client.get("/review").text
    assert '<td class="num">6</td><td class="num">3</td><td>alice</td>' in listing  # items, ratings, raters
    assert (
        "3 ratings" not in panel and '>3</td><td class="may-gate">' in panel
    )  # the judge compared on 3 cases
    page = client.get("/review/support", params={"rater": "alice"}).text
    assert 'data-key="q4"' in page and "your grade: 5" in page


def test_concurrent_saves_and_a_crash_mid_save_lose_no_earlier_grade(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [f"q{n}" for n in range(1, 7)]
    threads = [threading.Thread(target=save_rating, args=(seeded.root, "support", "bob", k, 3)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.case_id for r in load_ratings(seeded.root, "support")) == keys
    path = ratings_path(seeded.root, "support", "bob")
    before = path.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        save_rating(seeded.root, "support", "bob", "q1", 5)
    assert path.read_bytes() == before  # the old file, whole
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_token_is_required_off_loopback_and_checked_when_set(seeded: Seeded) -> None:
    check_binding("127.0.0.1", None)
    with pytest.raises(ConfigError, match="token"):
        check_binding("0.0.0.0", None)
    check_binding("0.0.0.0", "s3cret")
    client = _client(seeded, token="s3cret")
    assert client.get("/").status_code == 403
    assert client.get("/health").status_code == 200
    assert client.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    first = client.get("/traces?token=s3cret", follow_redirects=False)
    assert first.status_code == 303 and "token" not in first.headers["location"]
    assert client.get("/traces").status_code == 200  # the cookie now carries it


def test_review_queues_from_the_cli(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from aiapp.cli import app

    monkeypatch.chdir(seeded.root)
    runner = CliRunner()
    made = runner.invoke(
        app,
        [
            "review",
            "create",
            "--traces",
            "recent",
            "--route",
            "openai",
            "--criteria",
            "Helpful?",
            "--limit",
            "5",
            "--json",
        ],
    )
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["items"] == 5
    tasks = (seeded.root / "review" / "recent" / "tasks.jsonl").read_text().splitlines()
    assert len(tasks) == 5 and json.loads(tasks[0])["trace_id"] == seeded.trace_ids[-1]
    again = runner.invoke(app, ["review", "create", "--suite", "support", "--json"])
    assert again.exit_code == 0, again.output  # criteria from the suite's judge
    status = runner.invoke(app, ["review", "status", "support", "--json"])
    assert status.exit_code == 0 and json.loads(status.output)["judges"][0]["metric"] == "judge_rubric"


def test_the_repo_review_folder_is_where_queues_go(seeded: Seeded) -> None:
    assert (seeded.root / "review" / "support" / "queue.json").is_file()
    assert Path(seeded.root / "review" / "support" / "tasks.jsonl").read_text().count("\n") == 6


def test_every_page_has_an_empty_state(tmp_path: Path, aiapp_home: Path) -> None:
    settings = Settings()
    settings.home = aiapp_home
    client = TestClient(create_app(settings=settings, root=tmp_path))
    assert 'id="total-requests">0<' in client.get("/").text
    assert "no traces match" in client.get("/traces").text
    assert "no eval runs yet" in client.get("/evals").text
    assert "no queues yet" in client.get("/review").text
    assert "no prompts directory" in client.get("/prompts").text
    missing = client.get("/review/nothing")
    assert missing.status_code == 404 and "no such review queue" in missing.text
    assert client.get("/evals/x/compare").status_code == 404


def test_queues_are_created_from_the_console_too(seeded: Seeded) -> None:
    client = _client(seeded)
    listing = client.get("/review").text
    assert 'id="new-queue"' in listing and "<option>support</option>" in listing
    made = client.post(
        "/api/review",
        json={
            "source": "traces",
            "name": "errors",
            "criteria": "Is the failure explained?",
            "route": "local",
            "limit": 4,
        },
        headers=H,
    )
    assert made.status_code == 200, made.text
    assert made.json() == {"ok": True, "queue": "errors", "items": 4, "url": "/review/errors"}
    assert client.post("/api/review", json={"source": "traces", "name": "x"}, headers=H).status_code == 400
    assert client.post("/api/review", json={"source": "suite", "suite": "support"}).status_code == 403
    again = client.post(
        "/api/review", json={"source": "suite", "suite": "support", "name": "support-2"}, headers=H
    )
    assert again.json()["items"] == 6
    assert "support-2" in client.get("/review").text
