"""The flywheel: traces exported as eval cases (run by a suite), SFT rows, preference pairs; filters,
near-duplicates and PII redaction."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiapp import evals
from aiapp.apps import RAGApp
from aiapp.config import Settings, TracingSettings
from aiapp.errors import InputError
from aiapp.evals import TraceFilter, export_traces
from aiapp.gateway import Gateway
from aiapp.testing import FakeModel
from aiapp.tracing import SpanRecord, TraceStore
from aiapp.types import Hit, Message

EMAIL = "bob.smith@example.com"
CARD = "4111 1111 1111 1111"
DOCS = {
    "keys.md": "Rotate a key under Settings > API keys. The old key stops working after 24 hours.",
    "billing.md": "Invoices are sent monthly. Refunds take five business days.",
}


class Docs:
    """A retriever over two fixed documents, best match first."""

    name = "docs"

    def search(self, query: str, *, k: int = 5) -> list[Hit]:
        first = "billing.md" if "refund" in query.lower() or "invoice" in query.lower() else "keys.md"
        order = [first, *(s for s in DOCS if s != first)]
        return [
            Hit(text=DOCS[s], source=s, chunk_id=f"{s}#0", score=1.0 - i / 10) for i, s in enumerate(order)
        ][:k]


def _answer(messages: list[Message], options: Any) -> str:
    question = str(messages[-1].content).rpartition("<question>")[2].lower()
    if "refund" in question:
        return "Refunds take five business days [1]."
    if "delete" in question:
        return "I could not find an answer to that in the provided context."
    return "Rotate a key under Settings > API keys [1]. The old key stops working after 24 hours [1]."


def _app(home: Path, capture: str = "full") -> tuple[RAGApp, Gateway]:
    settings = Settings(home=home, tracing=TracingSettings(capture=capture))  # type: ignore[arg-type]
    gateway = Gateway(settings, models={"local": FakeModel(default=_answer)})
    return RAGApp(gateway=gateway, retriever=Docs()), gateway


def _store(gateway: Gateway) -> TraceStore:
    store = gateway.tracer.store
    assert store is not None
    return store


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def traced(tmp_path: Path) -> tuple[RAGApp, Gateway, dict[str, str]]:
    """Three questions asked, with feedback: keys +1, refund -1, delete unrated."""
    app, gateway = _app(tmp_path / "home")
    ids = {
        "keys": app.ask("How do I rotate my API key?").trace_id,
        "refund": app.ask("How long does a refund take?").trace_id,
        "delete": app.ask("How do I delete my account?").trace_id,
    }
    app.feedback(ids["keys"], 1, "clear")
    app.feedback(ids["refund"], -1, "too vague")
    return app, gateway, ids


def test_eval_export_loads_as_a_suite_dataset_and_runs(traced: Any, tmp_path: Path) -> None:
    _, gateway, ids = traced
    out = tmp_path / "suite" / "from_traces.jsonl"
    report = export_traces(_store(gateway), "eval", out, dedup=False)
    assert report.rows == 3 and report.traces == 3
    rows = {r["trace_id"]: r for r in _lines(out)}
    keys = rows[ids["keys"]]
    assert keys["question"] == "How do I rotate my API key?"
    assert keys["answer"] == keys["traced_answer"]  # approved by the user: a reference answer
    assert rows[ids["refund"]]["answer"] is None  # rated down: no reference, the answer is kept aside
    assert rows[ids["refund"]]["feedback"] == {
        "rating": 0.0,
        "sign": "negative",
        "count": 1,
        "comments": ["too vague"],
    }
    assert [c["source"] for c in keys["context"]] == ["keys.md", "billing.md"]
    assert keys["context"][0]["text"] == DOCS["keys.md"]  # the passage text, recovered from the prompt
    assert keys["prompt"] == "rag_default@v1" and keys["route"] == "local"

    suite = {
        "name": "from_traces",
        "dataset": {"path": "from_traces.jsonl"},
        "target": {"callable": "test_from_traces:answer_from_docs"},
        "scorers": [{"token_f1": {"threshold": 0.5}}, "faithfulness"],
        "concurrency": 1,
    }
    path = tmp_path / "suite" / "from_traces.yaml"
    path.write_text(yaml.safe_dump(suite))
    prepared = evals.prepare(path, gateway)
    assert {c.id for c in prepared.cases} == {f"trace-{i}" for i in ids.values()}
    case = next(c for c in prepared.cases if c.id == f"trace-{ids['keys']}")
    assert case.expected == keys["answer"] and case.metadata["feedback"]["sign"] == "positive"
    result = evals.run(prepared)
    assert result.cases == 3 and result.errors == 0
    f1 = result.metrics["token_f1"]
    assert list(f1.case_means()) == [f"trace-{ids['keys']}"]  # only the approved case has a reference
    assert f1.case_means()[f"trace-{ids['keys']}"] == 1.0  # the replayed answer matches its reference
    assert f1.unscored == 2
    faithful = result.metrics["faithfulness"].case_means()
    assert faithful[f"trace-{ids['keys']}"] == 1.0  # every statement supported by the traced context


def answer_from_docs(question: str, case: evals.Case) -> dict[str, Any]:
    """The suite's target: replays the traced answer and its context (what a regression run compares)."""
    hits = [Hit(text=c["text"], source=c["source"]) for c in case.metadata["context"] if c["text"]]
    return {"text": case.metadata["traced_answer"], "hits": hits}


def _check_chat_fine_tuning_row(row: Any, line: int) -> None:
    """OpenAI's chat fine-tuning format: {"messages": [...]} with system/user/assistant roles,
    string content that is not empty, optional system first, user and assistant turns
    alternating from a user turn, an assistant message last, and no other keys."""
    where = f"line {line}"
    assert isinstance(row, dict) and set(row) == {"messages"}, f"{where}: only a messages key"
    messages = row["messages"]
    assert isinstance(messages, list) and len(messages) >= 2, (
        f"{where}: at least a user and an assistant turn"
    )
    for i, m in enumerate(messages):
        assert isinstance(m, dict) and set(m) <= {"role", "content", "name", "weight"}, (
            f"{where}: message {i} keys"
        )
        assert m["role"] in ("system", "user", "assistant"), f"{where}: message {i} role {m['role']!r}"
        assert isinstance(m["content"], str) and m["content"].strip(), (
            f"{where}: message {i} has empty content"
        )
        if m["role"] == "system":
            assert i == 0, f"{where}: a system message only comes first"
    turns = [m["role"] for m in messages if m["role"] != "system"]
    assert turns[0] == "user", f"{where}: the conversation starts with the user"
    assert all(a != b for a, b in itertools.pairwise(turns)), f"{where}: turns alternate"
    assert messages[-1]["role"] == "assistant", f"{where}: the assistant message comes last"


def test_sft_export_validates_against_the_chat_fine_tuning_format(traced: Any, tmp_path: Path) -> None:
    _, gateway, _ = traced
    out = tmp_path / "sft.jsonl"
    report = export_traces(_store(gateway), "sft", out, dedup=False)
    rows = _lines(out)
    for n, row in enumerate(rows, start=1):
        _check_chat_fine_tuning_row(row, n)
    assert report.rows == len(rows) == 2  # the rated-down answer is not a training example
    assert report.skipped == {"negative feedback (not a training example)": 1}
    keys = next(r for r in rows if "rotate my API key" in r["messages"][-2]["content"])
    assert keys["messages"][0]["role"] == "system"
    assert "[1] keys.md\n" + DOCS["keys.md"] in keys["messages"][1]["content"]  # the prompt the model saw
    assert keys["messages"][-1]["content"].startswith("Rotate a key")

    user, assistant = {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}
    bad_rows = [  # the validator has teeth
        ({"messages": [assistant, user]}, "starts with the user"),
        ({"messages": [user, assistant, user]}, "assistant message comes last"),
        ({"messages": [user, {"role": "assistant", "content": " "}]}, "empty content"),
        ({"messages": [user, {"role": "tool", "content": "x"}]}, "role 'tool'"),
        ({"messages": [user, assistant], "metadata": {}}, "only a messages key"),
    ]
    for bad, problem in bad_rows:
        with pytest.raises(AssertionError, match=problem):
            _check_chat_fine_tuning_row(bad, 0)


def test_preference_pairs_from_feedback_on_near_duplicate_questions(tmp_path: Path) -> None:
    app, gateway = _app(tmp_path / "home")
    good = app.ask("How do I rotate my API key?").trace_id
    store = _store(gateway)
    # A second, worse answer to a paraphrase of the same question, rated down.
    bad = "bad0000000000001"
    store.record(
        SpanRecord(
            span_id=bad,
            trace_id=bad,
            kind="app",
            name="rag",
            route="local",
            input="How can I rotate my API key?",
            output="Contact support.",
            started_at=time.time(),
        )
    )
    store.add_feedback(good, 1.0)
    store.add_feedback(bad, -1.0)
    app.ask("How long does a refund take?")  # unrated: no pair
    out = tmp_path / "pref.jsonl"
    report = export_traces(store, "preference", out)  # near-duplicates by the local MiniLM embedder
    [row] = _lines(out)
    assert row["chosen"] == [{"role": "assistant", "content": store.trace(good)[0].output}]
    assert row["rejected"] == [{"role": "assistant", "content": "Contact support."}]
    assert row["prompt"][-1]["role"] == "user" and "rotate my API key" in row["prompt"][-1]["content"]
    assert row["metadata"]["chosen_trace_id"] == good and row["metadata"]["rejected_trace_id"] == bad
    assert report.collapsed == 1


def test_near_duplicate_questions_collapse_into_one_case(tmp_path: Path) -> None:
    app, gateway = _app(tmp_path / "home")
    first = app.ask("How do I rotate my API key?").trace_id
    again = app.ask("how can I rotate my api key").trace_id
    other = app.ask("How do I delete my account?").trace_id
    app.feedback(first, 1)
    out = tmp_path / "eval.jsonl"
    report = export_traces(_store(gateway), "eval", out)
    rows = {r["trace_id"]: r for r in _lines(out)}
    assert set(rows) == {first, other}  # the rated one represents its group
    assert rows[first]["duplicates"] == [again] and report.collapsed == 1
    assert export_traces(_store(gateway), "eval", out, threshold=0.999).rows == 3


def test_filters(traced: Any, tmp_path: Path) -> None:
    _, gateway, ids = traced
    store = _store(gateway)
    store.add_score(ids["delete"], "faithfulness", 0.2, comment="1/5 supported")
    store.add_score(ids["keys"], "faithfulness", 0.9)
    out = tmp_path / "f.jsonl"

    def exported(**kw: Any) -> set[str]:
        export_traces(store, "eval", out, dedup=False, filter=TraceFilter(**kw))
        return {r["trace_id"] for r in _lines(out)}

    assert exported(feedback="negative") == {ids["refund"]}
    assert exported(feedback="positive") == {ids["keys"]}
    assert exported(feedback="none") == {ids["delete"]}
    assert exported(score_below={"faithfulness": 0.5}) == {ids["delete"]}
    assert exported(route="local") == set(ids.values())
    assert exported(route="elsewhere") == set()
    assert exported(prompt="rag_default") == exported(prompt="rag_default@v1") == set(ids.values())
    assert exported(prompt="rag_default@v9") == set()
    assert exported(since=time.time() + 60) == set()
    assert exported(until=time.time() + 60) == set(ids.values())
    assert exported(guard_triggered=True) == set()
    parsed = TraceFilter.parse(
        ["route=local", "feedback=negative", "since=1d", "score_below=faithfulness<0.5"]
    )
    assert parsed.route == "local" and parsed.score_below == {"faithfulness": 0.5}
    assert parsed.since is not None and abs(parsed.since - (time.time() - 86400)) < 60
    with pytest.raises(InputError, match="unknown filter"):
        TraceFilter.parse(["colour=blue"])
    with pytest.raises(InputError, match="cannot read 'yesterday-ish' as a time"):
        TraceFilter.parse(["since=yesterday-ish"])


def test_guard_triggered_filter(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "t.db")
    for tid, action in (("g000000000000001", "redact"), ("g000000000000002", "allow")):
        store.record(
            SpanRecord(span_id=tid, trace_id=tid, kind="app", name="rag", input="q " + tid, output="a")
        )
        store.record(
            SpanRecord(
                span_id=tid + "l",
                trace_id=tid,
                parent_id=tid,
                kind="llm",
                name="local",
                input=[{"role": "user", "content": "q"}],
                output="a",
                attributes={"guards": [{"name": "pii", "stage": "input", "action": action}]},
            )
        )
    out = tmp_path / "g.jsonl"
    export_traces(store, "eval", out, dedup=False, filter=TraceFilter(guard_triggered=True))
    assert [r["trace_id"] for r in _lines(out)] == ["g000000000000001"]
    assert _lines(out)[0]["guard_triggered"] is True


def test_metadata_only_traces_are_skipped_with_the_reason(tmp_path: Path) -> None:
    app, gateway = _app(tmp_path / "home", capture="metadata")
    app.ask("How do I rotate my API key?")
    report = export_traces(_store(gateway), "eval", tmp_path / "e.jsonl", dedup=False)
    assert report.rows == 0 and report.skipped == {"no content stored (tracing.capture: metadata)": 1}


def test_pii_never_reaches_the_store_or_an_export_under_capture_redacted(tmp_path: Path) -> None:
    home = tmp_path / "home"
    app, gateway = _app(home, capture="redacted")
    question = f"How do I rotate my API key? Mail me at {EMAIL}, my card is {CARD}."
    answer = app.ask(question)
    app.ask(f"How do I rotate my API key? I am {EMAIL}")
    store = _store(gateway)
    from aiapp.tracing._feedback import record_feedback

    record_feedback(gateway.tracer, answer.trace_id, 1, comment=f"thanks, reach me at {EMAIL} or {CARD}")
    store.add_score(answer.trace_id, "faithfulness", 1.0)
    outputs = {kind: tmp_path / f"{kind}.jsonl" for kind in ("eval", "sft", "preference")}
    for kind, path in outputs.items():
        export_traces(store, kind, path)  # type: ignore[arg-type]
    gateway.close()
    digits = CARD.replace(" ", "")
    files = [*outputs.values(), *home.glob("traces.db*")]
    assert any(p.name == "traces.db" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in (EMAIL.encode(), CARD.encode(), digits.encode(), b"bob.smith"):
            assert secret not in data, f"{secret!r} found in {path.name}"
    assert "[EMAIL_ADDRESS_1]" in outputs["eval"].read_text()


def test_export_redacts_pii_even_from_a_full_capture_store(tmp_path: Path) -> None:
    app, gateway = _app(tmp_path / "home", capture="full")
    app.ask(f"How do I rotate my API key? I am {EMAIL}")
    out = tmp_path / "e.jsonl"
    report = export_traces(_store(gateway), "eval", out, dedup=False)
    text = out.read_text()
    assert EMAIL not in text and "[EMAIL_ADDRESS_1]" in text and report.redactions >= 1


def test_an_unknown_kind_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown export kind 'csv'"):
        export_traces(TraceStore(tmp_path / "t.db"), "csv", tmp_path / "x.jsonl")  # type: ignore[arg-type]


def _pairwise_judge(messages: list[Message], options: Any) -> str:
    """Prefers the response that points at Settings, whichever position it is in."""
    prompt = messages[-1].content
    first = prompt.split("<response_1>", 1)[1].split("</response_1>", 1)[0]
    return json.dumps({"reasoning": "more specific", "winner": "1" if "Settings" in first else "2"})


def test_preference_pairs_from_a_pairwise_judge_when_nobody_rated(tmp_path: Path) -> None:
    from aiapp.evals import build_scorer

    app, gateway = _app(tmp_path / "home")
    good = app.ask("How do I rotate my API key?").trace_id
    store = _store(gateway)
    vague = "vague000000000001"
    store.record(SpanRecord(span_id=vague, trace_id=vague, kind="app", name="rag", route="local",
                            input="how do I rotate  my API key?", output="Contact support.", started_at=time.time()))  # fmt: skip
    out = tmp_path / "pref.jsonl"
    assert export_traces(store, "preference", out).rows == 0  # nothing rated, no judge
    judge_gw = Gateway(gateway.settings, models={"judge": FakeModel(default=_pairwise_judge)})
    judge = build_scorer("judge_pairwise", None, gateway=judge_gw)
    report = export_traces(store, "preference", out, pairwise=judge)  # type: ignore[arg-type]
    [row] = _lines(out)
    assert row["metadata"]["method"] == "pairwise judge"
    assert row["metadata"]["chosen_trace_id"] == good and row["metadata"]["rejected_trace_id"] == vague
    assert row["rejected"][0]["content"] == "Contact support." and report.rows == 1


def test_a_rollout_shadow_call_is_not_taken_for_the_answer(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "t.db")
    t0 = time.time()
    user = [{"role": "user", "content": "How do I rotate my API key?"}]
    shadow = {"shadow_of": {"pair": "p1", "role": "shadow"}}
    spans = [
        SpanRecord(span_id="s1", trace_id="t1", kind="llm", name="local", input=user, output="Primary answer.", started_at=t0),
        SpanRecord(span_id="s2", trace_id="t1", parent_id="s1", kind="llm", name="local", started_at=t0 + 1,
                   input=[{"role": "user", "content": "v3 prompt"}], output="Shadow answer.", attributes=shadow),
        SpanRecord(span_id="s3", trace_id="t2", kind="llm", name="local", input=user, output="Shadow only.",
                   started_at=t0 + 2, attributes=shadow),
    ]  # fmt: skip
    for span in spans:
        store.record(span)
    out = tmp_path / "sft.jsonl"
    report = export_traces(store, "sft", out, dedup=False)
    [row] = _lines(out)
    assert row["messages"] == [*user, {"role": "assistant", "content": "Primary answer."}]
    assert report.skipped == {"a rollout shadow call": 1}
