"""Feedback: scores parsed, unknown traces refused, the capture policy applied, exported as a score."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

import aiapp
from aiapp.config import Settings, TracingSettings
from aiapp.errors import ConfigError, InputError
from aiapp.gateway import Gateway
from aiapp.tracing import ScoreRecord, SpanRecord, Tracer, TraceStore
from aiapp.tracing._feedback import FEEDBACK_SCORE_NAME, parse_feedback_score, record_feedback


class Recorder:
    """An exporter that keeps what it is sent."""

    name = "recorder"

    def __init__(self) -> None:
        self.scores: list[ScoreRecord] = []
        self.spans: list[SpanRecord] = []

    def export(self, spans: Sequence[SpanRecord], scores: Sequence[ScoreRecord]) -> None:
        self.spans += spans
        self.scores += scores

    def shutdown(self) -> None:
        pass


@pytest.mark.parametrize(
    ("given", "value"),
    [
        ("+1", 1.0),
        ("-1", -1.0),
        ("1", 1.0),
        (-1, -1.0),
        ("0.25", 0.25),
        (0, 0.0),
        ("up", 1.0),
        ("down", -1.0),
    ],
)
def test_scores_parse(given: str | int, value: float) -> None:
    assert parse_feedback_score(given) == value


@pytest.mark.parametrize("given", ["2", "-0.5", "nan", "inf", "good", "", 1.5, True])
def test_bad_scores_are_refused(given: str | float) -> None:
    with pytest.raises(InputError, match=r"feedback score must be \+1, -1 or a number in \[0, 1\]"):
        parse_feedback_score(given)


def _traced(tmp_path: Path, **tracer_args: object) -> tuple[Tracer, Recorder]:
    recorder = Recorder()
    tracer = Tracer(TraceStore(tmp_path / "t.db"), exporters=[recorder], **tracer_args)  # type: ignore[arg-type]
    with tracer.span("app", "rag", input="q"):
        pass
    return tracer, recorder


def test_feedback_is_stored_and_exported_as_a_score(tmp_path: Path) -> None:
    tracer, recorder = _traced(tmp_path)
    assert tracer.store is not None
    [root] = tracer.store.recent(1)
    stored = record_feedback(tracer, root.trace_id[:6], "+1", comment="clear", user="u42")
    assert stored.trace_id == root.trace_id and stored.score == 1.0
    assert tracer.store.feedback(root.trace_id)[0] | {"created_at": 0} == {
        "score": 1.0,
        "comment": "clear",
        "source": "user",
        "user": "u42",
        "created_at": 0,
    }
    assert tracer.flush_exports()
    [score] = recorder.scores
    assert (score.trace_id, score.name, score.value, score.comment, score.source) == (
        root.trace_id,
        FEEDBACK_SCORE_NAME,
        1.0,
        "clear",
        "user",
    )


def test_an_unknown_trace_is_a_clear_error_and_nothing_is_stored(tmp_path: Path) -> None:
    tracer, recorder = _traced(tmp_path)
    with pytest.raises(InputError, match="no trace with id 'feedface'"):
        record_feedback(tracer, "feedface", 1)
    tracer.flush_exports()
    assert recorder.scores == []


def test_the_comment_follows_the_capture_policy(tmp_path: Path) -> None:
    email = "ann@example.org"
    redacted, _ = _traced(tmp_path / "r", capture="redacted", redactor=lambda t: t.replace(email, "[EMAIL]"))
    metadata, _ = _traced(tmp_path / "m", capture="metadata")
    for tracer, kept in ((redacted, "write to [EMAIL]"), (metadata, None)):
        assert tracer.store is not None
        [root] = tracer.store.recent(1)
        assert record_feedback(tracer, root.trace_id, -1, comment=f"write to {email}").comment == kept
        assert tracer.store.feedback(root.trace_id)[0]["comment"] == kept


def test_tracing_disabled_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tracing is disabled"):
        record_feedback(Tracer(None), "abcd", 1)


def test_the_public_api(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, tracing=TracingSettings(capture="full"))
    with Gateway(settings) as gateway:
        reply = gateway.complete("How do I rotate my API key?")
        stored = aiapp.feedback(reply.trace_id, -1, comment="wrong", user="u1", gateway=gateway)
        assert stored.trace_id == reply.trace_id
        store = gateway.tracer.store
        assert store is not None
        [row] = store.feedback(reply.trace_id)
        assert (row["score"], row["comment"], row["user"]) == (-1.0, "wrong", "u1")
        assert row["created_at"] <= time.time()
        with pytest.raises(InputError, match="no trace with id"):
            aiapp.feedback("0000000000000000", 1, gateway=gateway)


def test_the_public_api_uses_the_configured_store(tmp_path: Path, aiapp_home: Path) -> None:
    with Gateway() as gateway:  # the default config and AIAPP_HOME, as aiapp.feedback builds it
        trace_id = gateway.complete("hello").trace_id
    aiapp.feedback(trace_id, 0.8)
    store = TraceStore(aiapp_home / "traces.db")
    assert [f["score"] for f in store.feedback(trace_id)] == [0.8]
