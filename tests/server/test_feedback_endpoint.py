"""``POST /v1/feedback`` on ``aiapp serve``: virtual keys, OpenAI-shaped errors, stored and exported."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from aiapp.config import Settings, TracingSettings
from aiapp.gateway import Gateway
from aiapp.server import create_app
from aiapp.server._keys import KeyStore
from aiapp.testing import FakeModel
from aiapp.tracing import ScoreRecord, SpanRecord, Tracer

if TYPE_CHECKING:
    from server_fixtures import Served

pytest_plugins = ["server_fixtures"]


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.scores: list[ScoreRecord] = []

    def export(self, spans: Sequence[SpanRecord], scores: Sequence[ScoreRecord]) -> None:
        self.scores += scores

    def shutdown(self) -> None:
        pass


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[dict[str, Any]]:
    from server_fixtures import Served

    settings = Settings(home=tmp_path / "home", tracing=TracingSettings(capture="full"))
    gateway = Gateway(settings, models={"local": FakeModel(default="Rotate it under Settings.")})
    recorder = Recorder()
    store = gateway.tracer.store
    assert store is not None
    gateway._tracer = Tracer(store, exporters=[recorder])  # the exporters part A configures from settings
    keys = KeyStore(tmp_path / "keys")
    _, raw = keys.create_key("team-a")
    served = Served(create_app(gateway, keys=keys, close_gateway=True)).start()
    try:
        yield {"served": served, "key": raw, "store": store, "recorder": recorder, "gateway": gateway}
    finally:
        served.stop()


def _post(served: Served, path: str, body: Any, key: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{served.url}{path}", json=body, headers=headers, timeout=10)


def test_feedback_on_a_served_answer(setup: dict[str, Any]) -> None:
    served, key = setup["served"], setup["key"]
    chat = _post(
        served,
        "/v1/chat/completions",
        {"model": "local", "messages": [{"role": "user", "content": "hi"}]},
        key,
    )
    assert chat.status_code == 200, chat.text
    trace_id = chat.headers["x-aiapp-trace-id"]
    reply = _post(served, "/v1/feedback", {"trace_id": trace_id, "score": -1, "comment": "not helpful"}, key)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "feedback" and body["trace_id"] == trace_id and body["score"] == -1.0
    assert body["user"] == "team-a"  # the key's name, when the client names no user
    rating = _post(served, "/v1/feedback", {"trace_id": trace_id[:8], "score": "0.8", "user": "u42"}, key)
    assert rating.status_code == 200 and rating.json()["user"] == "u42"
    rows = setup["store"].feedback(trace_id)
    assert [(r["score"], r["comment"], r["user"]) for r in rows] == [
        (-1.0, "not helpful", "team-a"),
        (0.8, None, "u42"),
    ]
    gateway: Gateway = setup["gateway"]
    assert gateway.tracer.flush_exports()
    from aiapp.evals import export_traces

    out = setup["store"].path + ".eval.jsonl"
    assert export_traces(setup["store"], "eval", out, dedup=False).rows == 1  # served traffic is data too
    row = json.loads(Path(out).read_text())
    assert (row["question"], row["traced_answer"], row["feedback"]["count"]) == (
        "hi",
        "Rotate it under Settings.",
        2,
    )
    assert [(s.trace_id, s.name, s.value) for s in setup["recorder"].scores] == [
        (trace_id, "user_feedback", -1.0),
        (trace_id, "user_feedback", 0.8),
    ]


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"trace_id": "0000000000000000", "score": 1}, 404, "trace_not_found", "trace_id"),
        ({"trace_id": "{trace}", "score": 3}, 400, "invalid_score", "score"),
        ({"trace_id": "{trace}", "score": 1, "colour": "red"}, 400, None, "colour"),
        ({"score": 1}, 400, None, "trace_id"),
    ],
)
def test_errors_are_openai_shaped(
    setup: dict[str, Any], body: dict[str, Any], status: int, code: str | None, param: str
) -> None:
    served, key = setup["served"], setup["key"]
    chat = _post(
        served,
        "/v1/chat/completions",
        {"model": "local", "messages": [{"role": "user", "content": "hi"}]},
        key,
    )
    body = {k: (chat.headers["x-aiapp-trace-id"] if v == "{trace}" else v) for k, v in body.items()}
    reply = _post(served, "/v1/feedback", body, key)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
    assert error["type"] == "invalid_request_error" and error["message"]
    if code:
        assert error["code"] == code
    assert setup["store"].feedback(chat.headers["x-aiapp-trace-id"]) == []


def test_a_missing_or_wrong_key_is_401(setup: dict[str, Any]) -> None:
    served = setup["served"]
    for key in (None, "sk-aiapp-nope"):
        reply = _post(served, "/v1/feedback", {"trace_id": "abcd", "score": 1}, key)
        assert reply.status_code == 401
        assert reply.json()["error"]["type"] == "authentication_error"
    bad_json = httpx.post(
        f"{served.url}/v1/feedback", content=b"{not json", headers={"authorization": f"Bearer {setup['key']}"}
    )
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"


def test_an_oversized_body_is_a_413(setup: dict[str, Any]) -> None:
    served, key = setup["served"], setup["key"]
    body = {"trace_id": "abcd", "score": 1, "comment": "x" * 100_000}
    reply = _post(served, "/v1/feedback", body, key)
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "request_too_large"
