"""RAGApp.ask(question, user=...): the user's arm answers (sticky), the arm is on the trace, the
label's shadow runs after the answer with the same question and context, and is never shown."""

from __future__ import annotations

from pathlib import Path

from rollout_helpers import make_prompts

from aiapp.apps import RAGApp
from aiapp.config import Settings
from aiapp.gateway import Gateway, run_sync
from aiapp.testing import FakeModel
from aiapp.types import Hit

LABELS = """\
production:
  answer:
    split: {v1: 50, v2: 50}
    shadow: {prompt: answer@v3, route: cand}
"""


class Retriever:
    def search(self, query: str, *, k: int = 5) -> list[Hit]:
        return [Hit(chunk_id="c1", source="doc.md", text="Set OLLAMA_HOST=0.0.0.0.", score=1.0)]


def test_ask_with_a_user_serves_the_users_arm_and_shadows_after(tmp_path: Path) -> None:
    prompts = make_prompts(tmp_path / "prompts", LABELS)
    main = FakeModel(name="test/main", default="Set OLLAMA_HOST [1].")
    cand = FakeModel(name="test/cand", default="the candidate's answer")
    gw = Gateway(Settings(prompts={"dir": prompts}), models={"main": main, "cand": cand})
    app = RAGApp(gateway=gw, retriever=Retriever(), prompt="answer@production", model="main")
    arms: dict[str, str] = {}
    for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
        answer = app.ask("How do I listen on all interfaces?", user=user)
        assert answer.text == "Set OLLAMA_HOST [1]."  # the shadow's reply is never shown
        arms[user] = answer.prompt
        assert app.ask("again?", user=user).prompt == answer.prompt  # sticky
    assert set(arms.values()) == {"answer@v1", "answer@v2"}
    assert app._rollout is not None
    run_sync(app._rollout.drain())
    assert cand.call_count == 12
    assert "Set OLLAMA_HOST=0.0.0.0." in cand.calls[0].messages[0].content  # same question and context
    assert cand.calls[0].messages[0].content.startswith("v3:")
    store = gw.tracer.store
    assert store is not None
    app_span = next(s for s in store.recent(100, kind="app") if s.name == "rag")
    assert app_span.attributes["rollout"]["experiment"] == "production/answer"
    assert app_span.attributes["rollout"]["arm"] == app_span.prompt_ref.split("@")[1]  # type: ignore[union-attr]
    spans = store.trace(app_span.trace_id)
    kinds = sorted((s.kind, s.name) for s in spans)
    assert ("llm", "cand") in kinds and ("llm", "main") in kinds  # the shadow is traced in the same trace


def test_ask_without_a_user_serves_the_heaviest_arm_and_no_rollout(tmp_path: Path) -> None:
    prompts = make_prompts(tmp_path / "prompts", LABELS.replace("{v1: 50, v2: 50}", "{v1: 90, v2: 10}"))
    main = FakeModel(name="test/main", default="ok")
    gw = Gateway(Settings(prompts={"dir": prompts}), models={"main": main})
    app = RAGApp(gateway=gw, retriever=Retriever(), prompt="answer", model="main")
    assert app.ask("q?").prompt == "answer@v1" and app._rollout is None


def test_a_weighted_route_is_sticky_by_the_apps_user(tmp_path: Path) -> None:
    from aiapp.gateway import RouteDeployment, RouteModel

    a, b = FakeModel(name="a", default="from a [1]"), FakeModel(name="b", default="from b [1]")
    route = RouteModel(
        "split", [RouteDeployment("a", a, 50), RouteDeployment("b", b, 50)], strategy="weighted"
    )
    gw = Gateway(Settings(tracing={"enabled": False}), models={"split": route})
    app = RAGApp(gateway=gw, retriever=Retriever(), model="split")
    answers = {u: {app.ask("q?", user=u).model for _ in range(4)} for u in (f"user{i}" for i in range(12))}
    assert all(len(models) == 1 for models in answers.values())
    assert {next(iter(m)) for m in answers.values()} == {"a", "b"}
