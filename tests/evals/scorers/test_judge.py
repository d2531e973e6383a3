"""LLM-as-judge scorers, driven by FakeModel judges: rubric, reference, pairwise, several judges."""

from __future__ import annotations

import json

import pytest

from aiapp.config import Deployment, Route, Settings
from aiapp.errors import ConfigError, ProviderServerError
from aiapp.evals._score import Case, Output, Sample
from aiapp.evals.scorers._base import build_scorer
from aiapp.evals.scorers._judge import PairwiseJudge, ReferenceJudge, RubricJudge
from aiapp.evals.scorers._judge_base import judge_unavailable
from aiapp.gateway import Gateway
from aiapp.testing import FakeModel
from aiapp.types import CallOptions, Message


def judged(**judges: FakeModel) -> Gateway:
    """A gateway whose judge routes are fake models (no network, no key)."""
    return Gateway(Settings(), models=dict(judges))


def sample(
    answer: str = "Paris.", expected: object = "Paris", question: str = "Capital of France?"
) -> Sample:
    return Sample(case=Case(id="c1", input=question, expected=expected), output=Output(text=answer))


def rubric(score: int, reasoning: str = "ok") -> str:
    return json.dumps({"reasoning": reasoning, "score": score})


# -- pointwise rubric -----------------------------------------------------------------------------


async def test_rubric_normalizes_the_grade_and_passes_at_the_raw_threshold() -> None:
    fake = FakeModel([rubric(5, "Correct and complete.")])
    judge = RubricJudge(gateway=judged(judge=fake), criteria="Names the capital correctly.")

    score = await judge.ascore(sample())

    assert score.value == 1.0 and score.passed is True
    assert score.reason == "Correct and complete."
    assert score.metadata["raw_score"] == 5 and score.metadata["judge"] == "judge"
    # The judge is asked for schema-constrained JSON at temperature 0 (so the cache can replay it).
    options = fake.last_call.options
    assert options.temperature == 0
    assert options.response_format is not None and options.response_format.name == "RubricVerdict"
    assert "Names the capital correctly." in fake.last_call.last_user_text
    assert "<reference_answer>" in fake.last_call.last_user_text


async def test_rubric_below_threshold_fails() -> None:
    score = await RubricJudge(gateway=judged(judge=FakeModel([rubric(3)]))).ascore(sample())
    assert score.value == 0.5 and score.passed is False
    assert score.metadata["raw_threshold"] == 4


async def test_rubric_levels_are_shown_to_the_judge() -> None:
    fake = FakeModel([rubric(4)])
    judge = RubricJudge(gateway=judged(judge=fake), levels={1: "useless", 5: "perfect"}, threshold=3)
    score = await judge.ascore(sample())
    assert score.passed is True
    assert "1: useless" in fake.last_call.last_user_text and "5: perfect" in fake.last_call.last_user_text


async def test_garbage_reply_is_sent_back_with_the_error_then_the_retry_scores() -> None:
    fake = FakeModel(["Sure! I'd give it a 4.", rubric(4, "Good.")])
    score = await RubricJudge(gateway=judged(judge=fake)).ascore(sample())

    assert score.value == 0.75 and score.metadata["attempts"] == 2
    retry = fake.last_call.messages
    assert retry[-2] == Message.assistant("Sure! I'd give it a 4.")
    assert "not valid JSON" in retry[-1].content and '"score"' in retry[-1].content


async def test_reply_off_the_schema_counts_as_unusable() -> None:
    fake = FakeModel([rubric(7), rubric(2)])
    score = await RubricJudge(gateway=judged(judge=fake)).ascore(sample())
    assert score.metadata["raw_score"] == 2
    assert "does not match RubricVerdict" in fake.last_call.last_user_text


async def test_judge_still_failing_after_retries_is_unscored_with_the_raw_reply() -> None:
    fake = FakeModel(["no idea", "still no idea"])
    score = await RubricJudge(gateway=judged(judge=fake), retries=1).ascore(sample())

    assert not score.scored and score.passed is None
    assert "unusable after 2 attempt(s)" in score.reason
    assert score.metadata["raw"] == "still no idea"
    assert len(score.metadata["parse_errors"]) == 2
    assert fake.call_count == 2


async def test_retries_zero_means_one_call() -> None:
    fake = FakeModel(["nope"])
    score = await RubricJudge(gateway=judged(judge=fake), retries=0).ascore(sample())
    assert not score.scored and fake.call_count == 1


async def test_provider_failure_is_unscored_not_raised() -> None:
    fake = FakeModel([ProviderServerError("boom", status=503)])
    score = await RubricJudge(gateway=judged(judge=fake)).ascore(sample())
    assert not score.scored and "ProviderServerError" in score.reason


async def test_target_failure_is_unscored_without_calling_the_judge() -> None:
    fake = FakeModel([])
    failed = Sample(case=Case(id="c1", input="q"), output=Output(error="timeout"))
    score = await RubricJudge(gateway=judged(judge=fake)).ascore(failed)
    assert score.reason == "target failed: timeout" and fake.call_count == 0


def test_sync_score_and_registry() -> None:
    gw = judged(judge=FakeModel([rubric(4)]))
    judge = build_scorer("judge_rubric", {"criteria": "Be right.", "threshold": 4}, gateway=gw)
    assert judge.calls_models is True and judge.name == "judge_rubric"
    assert judge.score(sample()).value == 0.75
    with pytest.raises(ConfigError, match="outside the 1–5 scale"):
        build_scorer("judge_rubric", {"threshold": 9})


# -- no judge: unscored with the reason, never a fake score ---------------------------------------


async def test_no_judge_route_is_unscored_with_a_clear_reason() -> None:
    score = await RubricJudge(gateway=Gateway(Settings())).ascore(sample())
    assert not score.scored
    assert score.reason.startswith("no judge model configured")
    assert "OPENAI_API_KEY" in score.reason


async def test_no_gateway_is_unscored() -> None:
    score = await RubricJudge().ascore(sample())
    assert not score.scored and "no gateway" in score.reason


async def test_the_offline_extractive_model_cannot_judge() -> None:
    settings = Settings(routes={"judge": Route(deployments=[Deployment(model="local/extractive")])})
    score = await RubricJudge(gateway=Gateway(settings)).ascore(sample())
    assert not score.scored and "local/extractive" in score.reason and "cannot judge" in score.reason
    # The same when an injected model is the extractive one.
    injected = judged(judge=FakeModel([rubric(5)], name="local/extractive"))
    assert "cannot judge" in str(judge_unavailable(injected, "judge"))


async def test_judge_route_without_its_api_key_is_unscored() -> None:
    route = Route(deployments=[Deployment(model="openai/gpt-4o-mini", api_key_env="OPENAI_API_KEY")])
    gw = Gateway(Settings(routes={"judge": route}))
    score = await ReferenceJudge(gateway=gw).ascore(sample())
    assert not score.scored
    assert "no judge model configured" in score.reason and "OPENAI_API_KEY" in score.reason


def test_judge_route_with_its_key_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    route = Route(deployments=[Deployment(model="openai/gpt-4o-mini", api_key_env="OPENAI_API_KEY")])
    assert judge_unavailable(Gateway(Settings(routes={"judge": route})), "judge") is None


# -- reference-based --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "value", "passed"), [("yes", 1.0, True), ("partial", 0.5, False), ("NO", 0.0, False)]
)
async def test_reference_verdicts(verdict: str, value: float, passed: bool) -> None:
    fake = FakeModel([json.dumps({"reasoning": "compared", "verdict": verdict})])
    score = await ReferenceJudge(gateway=judged(judge=fake)).ascore(sample())
    assert (score.value, score.passed) == (value, passed)
    assert score.metadata["verdict"] == verdict.lower()
    assert "<reference_answer>\nParis\n</reference_answer>" in fake.last_call.last_user_text


async def test_reference_judge_needs_a_reference() -> None:
    fake = FakeModel([])
    score = await ReferenceJudge(gateway=judged(judge=fake)).ascore(sample(expected=None))
    assert not score.scored and "no reference" in score.reason and fake.call_count == 0


# -- pairwise ---------------------------------------------------------------------------------------


def winner(w: str) -> str:
    return json.dumps({"reasoning": "compared", "winner": w})


def prefers(text: str) -> object:
    """A consistent judge: picks whichever response contains ``text``."""

    def reply(messages: list[Message], options: CallOptions) -> str:
        prompt = messages[-1].content
        first = prompt.split("<response_1>", 1)[1].split("</response_1>", 1)[0]
        return winner("1" if text in first else "2")

    return reply


async def test_pairwise_judge_that_always_prefers_the_first_position_gives_a_tie() -> None:
    fake = FakeModel([winner("1"), winner("1")])
    pair = PairwiseJudge(gateway=judged(judge=fake))
    case = Case(id="c1", input="Capital of France?")

    score = await pair.acompare(case, Output(text="Paris."), Output(text="Lyon."))

    assert score.value == 0.5 and score.metadata["outcome"] == "tie"
    assert score.metadata["position_bias"] is True and score.metadata["consistent"] is False
    assert [v["winner"] for v in score.metadata["verdicts"]] == ["A", "B"]
    assert [v["order"] for v in score.metadata["verdicts"]] == ["AB", "BA"]
    # Both orders were really asked.
    prompts = [call.last_user_text for call in fake.calls]
    assert "<response_1>\nParis.\n</response_1>" in prompts[0]
    assert "<response_1>\nLyon.\n</response_1>" in prompts[1]


async def test_pairwise_consistent_preference_is_a_win_or_a_loss() -> None:
    case = Case(id="c1", input="Capital of France?")
    gw = judged(judge=FakeModel(default=prefers("Paris")))
    pair = PairwiseJudge(gateway=gw)

    win = await pair.acompare(case, Output(text="Paris."), Output(text="Lyon."))
    loss = await pair.acompare(case, Output(text="Lyon."), Output(text="Paris."))

    assert (win.value, win.metadata["outcome"], win.metadata["consistent"]) == (1.0, "A", True)
    assert (loss.value, loss.metadata["outcome"]) == (0.0, "B")
    assert win.metadata["position_bias"] is False


async def test_pairwise_needs_both_orders() -> None:
    fake = FakeModel([winner("1"), "garbage", "garbage"])
    score = await PairwiseJudge(gateway=judged(judge=fake)).acompare(
        Case(id="c", input="q"), Output(text="a"), Output(text="b")
    )
    assert not score.scored and "both orders" in score.reason


async def test_judge_pairwise_scorer_compares_the_output_with_the_reference() -> None:
    gw = judged(judge=FakeModel(default=prefers("Paris")))
    scorer = build_scorer("judge_pairwise", {}, gateway=gw)
    better_or_equal = await scorer.ascore(sample(answer="Paris, on the Seine.", expected="Lyon"))
    worse = await scorer.ascore(sample(answer="Lyon.", expected="Paris"))
    assert better_or_equal.value == 1.0 and better_or_equal.passed is True
    assert worse.value == 0.0 and worse.passed is False


# -- several judges ---------------------------------------------------------------------------------


async def test_several_judges_vote_and_average() -> None:
    gw = judged(a=FakeModel([rubric(5)]), b=FakeModel([rubric(4)]), c=FakeModel([rubric(2)]))
    score = await RubricJudge(gateway=gw, judges=["a", "b", "c"]).ascore(sample())

    assert score.value == pytest.approx((1.0 + 0.75 + 0.25) / 3)
    assert score.passed is True  # two of three pass
    assert score.metadata["judges"]["c"]["raw_score"] == 2
    assert score.metadata["scored_judges"] == 3


async def test_unscored_judges_are_left_out_of_the_vote() -> None:
    gw = judged(a=FakeModel([rubric(2)]), b=FakeModel(["garbage"]), c=FakeModel([rubric(1)]))
    score = await RubricJudge(gateway=gw, judges=["a", "b", "c", "missing"], retries=0).ascore(sample())

    assert score.value == pytest.approx((0.25 + 0.0) / 2) and score.passed is False
    assert score.metadata["scored_judges"] == 2
    assert score.metadata["judges"]["b"]["value"] is None
    assert "no judge model configured" in score.metadata["judges"]["missing"]["reason"]


async def test_all_judges_unscored_is_unscored() -> None:
    gw = judged(a=FakeModel(["x"]), b=FakeModel(["y"]))
    score = await RubricJudge(gateway=gw, judges=["a", "b"], retries=0).ascore(sample())
    assert not score.scored and score.reason.startswith("no judge could score")


# -- gating on human agreement ----------------------------------------------------------------------


async def test_a_judge_may_gate_only_when_its_human_agreement_is_high_enough() -> None:
    judge = RubricJudge(gateway=judged(judge=FakeModel(default=rubric(5))), min_agreement=0.6)
    assert judge.may_gate is False
    score = await judge.ascore(sample())
    assert score.metadata["may_gate"] is False and "not validated" in score.metadata["gate_note"]

    judge.set_agreement(0.45, method="krippendorff_alpha_ordinal")
    assert judge.may_gate is False
    judge.set_agreement(0.72, method="krippendorff_alpha_ordinal")
    assert judge.may_gate is True
    score = await judge.ascore(sample())
    assert score.metadata["agreement"] == 0.72 and score.metadata["may_gate"] is True

    assert RubricJudge(min_agreement=None).may_gate is True  # no requirement set
    assert RubricJudge(min_agreement=0.6, agreement=0.8).may_gate is True
