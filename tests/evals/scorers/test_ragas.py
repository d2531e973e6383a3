"""The ragas adapter: ragas's own metrics, with aiapp routes as its LLM and aiapp embedders.

ragas runs for real here (the ``ragas`` extra is in the Makefile's EXTRAS, so ``make test`` has it):
its prompts go through the gateway to a ``FakeModel`` (or the local stub server) that answers each
ragas reply schema with known verdicts, so every expected value is worked out by hand. ragas NaNs
(and its 0 for "no question generated") must come back unscored with a reason, never NaN or 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from aiapp.config import Deployment, Route, Settings
from aiapp.errors import ConfigError
from aiapp.evals._score import Case, Output, Sample
from aiapp.evals.scorers._base import build_scorer, scorer_names
from aiapp.evals.scorers._ragas import import_ragas, to_score
from aiapp.gateway import Gateway
from aiapp.gateway.embedders import Embedder, TextKind, Vectors, normalize
from aiapp.testing import FakeModel, StubServer, embed_text
from aiapp.types import CallOptions, Hit, Message


@pytest.mark.parametrize("value", [float("nan"), None, float("inf"), "n/a"])
def test_values_ragas_could_not_compute_become_unscored(value: object) -> None:
    score = to_score("ragas_faithfulness", value)
    assert not score.scored and score.value is None and "instead of a score" in score.reason


def test_a_real_value_becomes_a_score() -> None:
    score = to_score("ragas_faithfulness", np.float64(0.75), "ok", threshold=0.7, judge="judge")
    assert (score.value, score.passed, score.metadata) == (0.75, True, {"judge": "judge"})


def test_ragas_scorers_are_registered_and_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"ragas", "ragas_faithfulness", "ragas_context_recall"} <= set(scorer_names())
    monkeypatch.setitem(sys.modules, "ragas", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'aiapp\[ragas\]'"):
        build_scorer("ragas_faithfulness", {})


def test_unknown_ragas_metric() -> None:
    with pytest.raises(ConfigError, match="unknown ragas metric 'bleu'"):
        build_scorer("ragas", {"metric": "bleu"})


# -- with ragas installed ---------------------------------------------------------------------------

SAMPLE = Sample(
    case=Case(id="q1", input="Which port does Ollama use?", expected="Ollama uses port 11434."),
    output=Output(
        text="Ollama uses port 11434. It was written in Rust.",
        hits=[Hit(text="Ollama listens on port 11434 by default.", source="docs/faq.md")],
    ),
)


def ragas_judge(
    *,
    statements: list[str],
    verdicts: list[int],
    question: str = "Which port does Ollama use?",
    noncommittal: int = 0,
) -> object:
    """A fake judge that answers each ragas prompt by the schema it asks for (``response_format``)."""

    def reply(messages: list[Message], options: CallOptions) -> str:
        assert options.response_format is not None and options.temperature == 0
        schema = options.response_format.name
        if schema == "StatementGeneratorOutput":
            return json.dumps({"statements": statements})
        if schema == "NLIStatementOutput":
            rows = [
                {"statement": s, "reason": "-", "verdict": v}
                for s, v in zip(statements, verdicts, strict=True)
            ]
            return json.dumps({"statements": rows})
        if schema == "ContextRecallOutput":
            rows = [
                {"statement": s, "reason": "-", "attributed": v}
                for s, v in zip(statements, verdicts, strict=True)
            ]
            return json.dumps({"classifications": rows})
        if schema == "ContextPrecisionOutput":
            return json.dumps({"reason": "-", "verdict": verdicts[0]})
        if schema == "AnswerRelevanceOutput":
            return json.dumps({"question": question, "noncommittal": noncommittal})
        raise AssertionError(f"unexpected ragas schema {schema}")

    return reply


def gateway(fake: FakeModel) -> Gateway:
    return Gateway(Settings(), models={"judge": fake})


@pytest.fixture
def ragas_installed() -> None:
    """ragas must be importable: a missing extra fails here (make test installs it), never skips."""
    import_ragas()


@pytest.mark.usefixtures("ragas_installed")
async def test_ragas_faithfulness_through_the_gateway() -> None:
    statements = ["Ollama uses port 11434.", "Ollama was written in Rust."]
    fake = FakeModel(default=ragas_judge(statements=statements, verdicts=[1, 0]))
    scorer = build_scorer("ragas_faithfulness", {}, gateway=gateway(fake))

    score = await scorer.ascore(SAMPLE)

    assert score.scorer == "ragas_faithfulness" and score.value == 0.5
    assert score.metadata["engine"] == "ragas"
    assert fake.call_count == 2  # statements, then verdicts: both through the gateway
    assert score.metadata["judge_calls"] == 2
    assert score.metadata["ragas_steps"] == ["StatementGeneratorOutput", "NLIStatementOutput"]
    assert os.environ["RAGAS_DO_NOT_TRACK"] == "true"
    # ragas's own prompt text reached the judge, with the answer in it
    assert "It was written in Rust." in fake.calls[0].messages[-1].content


@pytest.mark.usefixtures("ragas_installed")
async def test_ragas_nan_is_unscored_with_a_reason() -> None:
    fake = FakeModel(default=ragas_judge(statements=[], verdicts=[]))  # no statements → ragas NaN
    score = await build_scorer("ragas_faithfulness", {}, gateway=gateway(fake)).ascore(SAMPLE)
    assert not score.scored and "ragas returned nan" in score.reason
    assert "extracted no statements from the answer" in score.reason
    assert score.value is None and score.metadata["judge_calls"] == 1


@pytest.mark.usefixtures("ragas_installed")
async def test_ragas_context_metrics() -> None:
    fake = FakeModel(default=ragas_judge(statements=["Ollama uses port 11434."], verdicts=[1]))
    recall = await build_scorer("ragas", {"metric": "context_recall"}, gateway=gateway(fake)).ascore(SAMPLE)
    precision = await build_scorer("ragas_context_precision", {}, gateway=gateway(fake)).ascore(SAMPLE)
    assert recall.scorer == "ragas_context_recall" and recall.value == 1.0
    assert precision.value == pytest.approx(1.0)


class HashEmbedder(Embedder):
    name = "test/hash"
    dim = 64

    def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        return normalize(np.array([embed_text(t, self.dim) for t in texts]))


@pytest.mark.usefixtures("ragas_installed")
async def test_ragas_answer_relevancy_uses_aiapp_embeddings() -> None:
    fake = FakeModel(default=ragas_judge(statements=[], verdicts=[]))
    scorer = build_scorer(
        "ragas_answer_relevancy", {"embedder": HashEmbedder(), "strictness": 2}, gateway=gateway(fake)
    )
    score = await scorer.ascore(SAMPLE)
    assert score.value == pytest.approx(1.0)  # the generated question is the question itself
    assert fake.call_count == 2


@pytest.mark.usefixtures("ragas_installed")
async def test_ragas_unscored_paths() -> None:
    fake = FakeModel(["not json", "still not json"])
    broken = await build_scorer("ragas_faithfulness", {}, gateway=gateway(fake)).ascore(SAMPLE)
    assert not broken.scored and broken.metadata["raw"] == "still not json"

    no_judge = await build_scorer("ragas_faithfulness", {}, gateway=Gateway(Settings())).ascore(SAMPLE)
    assert not no_judge.scored and no_judge.reason.startswith("no judge model configured")

    no_ref = SAMPLE.model_copy(update={"case": Case(id="q2", input="Which port?")})
    missing = await build_scorer("ragas_context_recall", {}, gateway=gateway(FakeModel())).ascore(no_ref)
    assert not missing.scored and "no reference answer" in missing.reason


@pytest.mark.usefixtures("ragas_installed")
async def test_ragas_nan_from_missing_verdicts_and_classifications_is_unscored() -> None:
    no_verdicts = FakeModel(
        [json.dumps({"statements": ["Ollama uses port 11434."]}), json.dumps({"statements": []})]
    )
    faith = await build_scorer("ragas_faithfulness", {}, gateway=gateway(no_verdicts)).ascore(SAMPLE)
    assert not faith.scored and "no verdict for any of the answer's statements" in faith.reason

    no_classes = FakeModel([json.dumps({"classifications": []})])
    recall = await build_scorer("ragas_context_recall", {}, gateway=gateway(no_classes)).ascore(SAMPLE)
    assert not recall.scored and "classified none of the reference answer's statements" in recall.reason
    assert recall.metadata["ragas_value"] == "nan"


@pytest.mark.usefixtures("ragas_installed")
async def test_ragas_answer_relevancy_without_questions_is_unscored_not_zero() -> None:
    fake = FakeModel(default=ragas_judge(statements=[], verdicts=[], question=""))
    scorer = build_scorer(
        "ragas_answer_relevancy", {"embedder": HashEmbedder(), "strictness": 2}, gateway=gateway(fake)
    )
    score = await scorer.ascore(SAMPLE)
    assert not score.scored and score.value is None
    assert "generated no question" in score.reason and score.metadata["ragas_value"] == "0.0"


@pytest.mark.usefixtures("ragas_installed")
async def test_ragas_answer_relevancy_noncommittal_is_a_real_zero() -> None:
    # A noncommittal answer is ragas's genuine 0 (it computed it): that one stays a score.
    fake = FakeModel(default=ragas_judge(statements=[], verdicts=[], noncommittal=1))
    scorer = build_scorer(
        "ragas_answer_relevancy", {"embedder": HashEmbedder(), "strictness": 1}, gateway=gateway(fake)
    )
    score = await scorer.ascore(SAMPLE)
    assert score.scored and score.value == 0.0


@pytest.mark.usefixtures("ragas_installed")
async def test_ragas_answer_relevancy_with_the_default_local_minilm() -> None:
    """No embedder given: the default local ONNX MiniLM, through the ragas embedding wrapper."""
    from aiapp.gateway.embedders import DEFAULT_EMBEDDER, build_embedder

    same = FakeModel(default=ragas_judge(statements=[], verdicts=[]))
    other = FakeModel(default=ragas_judge(statements=[], verdicts=[], question="How do I bake bread?"))
    on_topic = await build_scorer("ragas_answer_relevancy", {"strictness": 1}, gateway=gateway(same)).ascore(
        SAMPLE
    )
    off_topic = await build_scorer(
        "ragas_answer_relevancy", {"strictness": 1}, gateway=gateway(other)
    ).ascore(SAMPLE)

    minilm = build_embedder(DEFAULT_EMBEDDER)
    q, bread = minilm.embed(["Which port does Ollama use?", "How do I bake bread?"], kind="query")
    assert on_topic.value == pytest.approx(1.0, abs=1e-5)
    assert off_topic.value == pytest.approx(float(q @ bread), abs=1e-4) and off_topic.value < 0.5


@pytest.mark.usefixtures("ragas_installed")
async def test_concurrent_cases_keep_their_own_ragas_steps() -> None:
    """One scorer, one ragas metric object, cases scored at once: each score explains only itself."""
    import asyncio

    def reply(messages: list[Message], options: CallOptions) -> str:
        prompt = messages[-1].content
        empty = "EMPTY" in prompt
        if options.response_format is not None and options.response_format.name == "StatementGeneratorOutput":
            return json.dumps({"statements": [] if empty else ["Ollama uses port 11434."]})
        return json.dumps(
            {"statements": [{"statement": "Ollama uses port 11434.", "reason": "-", "verdict": 1}]}
        )

    scorer = build_scorer("ragas_faithfulness", {}, gateway=gateway(FakeModel(default=reply)))
    empty = SAMPLE.model_copy(update={"output": SAMPLE.output.model_copy(update={"text": "EMPTY"})})
    scores = await asyncio.gather(*(scorer.ascore(s) for s in [SAMPLE, empty, SAMPLE, empty]))
    assert [s.value for s in scores] == [1.0, None, 1.0, None]
    assert [s.metadata["judge_calls"] for s in scores] == [2, 1, 2, 1]


@pytest.mark.usefixtures("ragas_installed")
def test_ragas_through_a_provider_route_on_the_stub_server(stub: StubServer) -> None:
    """An ordinary configured route (OpenAI-compatible provider, HTTP to the local stub) as ragas's LLM."""
    settings = Settings(
        routes={"judge": Route(deployments=[Deployment(model="vllm/stub-judge", api_base=stub.base_url)])}
    )
    stub.queue_replies(
        json.dumps({"statements": ["Ollama uses port 11434.", "Ollama was written in Rust."]}),
        json.dumps(
            {
                "statements": [
                    {"statement": "Ollama uses port 11434.", "reason": "stated", "verdict": 1},
                    {"statement": "Ollama was written in Rust.", "reason": "not stated", "verdict": 0},
                ]
            }
        ),
    )
    with Gateway(settings) as gw:
        score = build_scorer("ragas_faithfulness", {}, gateway=gw).score(SAMPLE)  # the sync path
    assert score.value == 0.5 and score.metadata["judge_calls"] == 2
    assert stub.stats()["requests"] == 2 and stub.stats()["pending_replies"] == 0


@pytest.mark.usefixtures("ragas_installed")
async def test_ragas_never_sends_analytics(monkeypatch: pytest.MonkeyPatch) -> None:
    import ragas._analytics as analytics

    sent: list[object] = []
    monkeypatch.setattr(analytics.requests, "post", lambda *a, **k: sent.append((a, k)))
    # As if ragas had been imported and asked for the flag before aiapp set it: a stale cached False.
    monkeypatch.setenv("RAGAS_DO_NOT_TRACK", "false")
    analytics.do_not_track.cache_clear()
    assert analytics.do_not_track() is False

    fake = FakeModel(default=ragas_judge(statements=["Ollama uses port 11434."], verdicts=[1]))
    scorer = build_scorer("ragas_faithfulness", {}, gateway=gateway(fake))
    assert (await scorer.ascore(SAMPLE)).value == 1.0
    analytics.track(analytics.IsCompleteEvent(event_type="probe", is_completed=True))
    assert analytics.do_not_track() is True and sent == []


def test_importing_and_running_ragas_opens_no_connection(tmp_path: Path) -> None:
    """In a fresh process (nothing imported or cached yet), a ragas score reaches no host at all and
    leaves nothing under ``$HOME`` (ragas keeps an analytics user id there when tracking is on)."""
    script = tmp_path / "probe.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, os, socket
            os.environ.pop("RAGAS_DO_NOT_TRACK", None)
            attempts = []
            def refuse(self, address):
                attempts.append(str(address))
                raise OSError("network disabled by the test")
            def no_dns(host, *args, **kwargs):
                attempts.append(f"dns {host}")
                raise socket.gaierror("network disabled by the test")
            socket.socket.connect = refuse
            socket.getaddrinfo = no_dns
            from aiapp.config import Deployment, Route, Settings
            from aiapp.evals._score import Case, Output, Sample
            from aiapp.evals.scorers import build_scorer
            from aiapp.gateway import Gateway
            from aiapp.testing import FakeModel
            from aiapp.types import Hit
            fake = FakeModel([
                json.dumps({"statements": ["Ollama uses port 11434."]}),
                json.dumps({"statements": [{"statement": "Ollama uses port 11434.", "reason": "-", "verdict": 1}]}),
            ])
            sample = Sample(
                case=Case(id="q", input="Which port?"),
                output=Output(text="Ollama uses port 11434.", hits=[Hit(text="port 11434", source="faq.md")]),
            )
            score = build_scorer("ragas_faithfulness", {}, gateway=Gateway(Settings(), models={"judge": fake})).score(sample)
            print(json.dumps({"value": score.value, "attempts": attempts, "flag": os.environ["RAGAS_DO_NOT_TRACK"]}))
            """
        )
    )
    home = tmp_path / "user"
    home.mkdir()
    env = {**os.environ, "AIAPP_HOME": str(tmp_path / "aiapp"), "HOME": str(home)}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"value": 1.0, "attempts": [], "flag": "true"}
    assert not list(home.rglob("*")), "ragas wrote under $HOME (e.g. its analytics user id)"


@pytest.mark.usefixtures("ragas_installed")
def test_a_suite_scores_with_ragas_and_counts_its_nans_as_unscored(
    make_suite: Callable[..., Path], aiapp_home: Path
) -> None:
    """``ragas_faithfulness`` in a suite file: the runner hands it the gateway; a NaN is an unscored case."""
    from aiapp import evals

    def judge(messages: list[Message], options: CallOptions) -> str:
        data = json.loads(messages[-1].content.rsplit("\ninput: ", 1)[1].rsplit("\nOutput:", 1)[0])
        assert options.response_format is not None
        if options.response_format.name == "StatementGeneratorOutput":  # "?" yields no statement
            return json.dumps({"statements": [] if data["answer"] == "?" else [data["answer"]]})
        rows = [
            {"statement": s, "reason": "-", "verdict": int(s in ("4", "Paris"))} for s in data["statements"]
        ]
        return json.dumps({"statements": rows})

    settings = Settings()
    settings.home = aiapp_home
    gw = Gateway(settings, models={"judge": FakeModel(default=judge)})
    suite = make_suite(target="fake_targets:slow_oracle", scorers=["ragas_faithfulness"])
    result = evals.run(evals.prepare(suite, gw))

    est = result.estimates["ragas_faithfulness"]
    assert (est.n, est.unscored) == (3, 1) and est.mean == pytest.approx(2 / 3)
    unscored = [s for row in result.iter_rows() for s in row["scores"] if s["value"] is None]
    assert len(unscored) == 1 and "extracted no statements" in unscored[0]["reason"]
