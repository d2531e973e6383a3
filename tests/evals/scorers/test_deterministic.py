"""Deterministic and retrieval scorers: one example each, plus their unscored paths."""

from __future__ import annotations

from typing import Any

import pytest

from aiapp.errors import ConfigError
from aiapp.evals import Case, Output, Sample, build_scorer, scorer_names
from aiapp.types import Hit


def sample(text: str, expected: Any = None, hits: list[str] | None = None, **metadata: Any) -> Sample:
    return Sample(
        case=Case(id="c", input="q", expected=expected, metadata=metadata),
        output=Output(text=text, hits=[Hit(text="t", source=s) for s in hits or []]),
    )


def score(name: str, s: Sample, **params: Any) -> tuple[float | None, bool | None, str]:
    result = build_scorer(name, params).score(s)
    return result.value, result.passed, result.reason


def test_exact_match_normalizes() -> None:
    assert score("exact_match", sample("The Paris.", "paris"))[:2] == (1.0, True)
    assert score("exact_match", sample("Lyon", ["Paris", "paris, France"]))[:2] == (0.0, False)
    assert score("exact_match", sample("Paris", "paris"), normalize=False)[0] == 0.0
    value, _, reason = score("exact_match", sample("x"))
    assert value is None and reason == "case has no expected answer"


def test_regex_contains_any_of() -> None:
    assert score("regex", sample("port 11434"), pattern=r"\b11434\b")[0] == 1.0
    assert score("contains", sample("Set OLLAMA_HOST", "ollama_host"))[0] == 1.0
    assert score("contains", sample("a b", None), value=["a", "c"], mode="all")[0] == 0.0
    assert score("any_of", sample("it is blue"), values=["red", "blue"])[0] == 1.0


def test_json_equal_and_schema() -> None:
    assert score("json_equal", sample('```json\n{"b": 2, "a": 1}\n```', {"a": 1, "b": 2}))[0] == 1.0
    assert score("json_equal", sample("{not json", {"a": 1}))[2].startswith("output is not JSON")
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert score("json_schema", sample('{"n": 3}'), schema=schema)[0] == 1.0
    value, _, reason = score("json_schema", sample('{"n": "three"}'), schema=schema)
    assert value == 0.0 and reason.startswith("n:")


def test_numeric_reads_gsm8k_answers() -> None:
    gold = "She sells 9 eggs.\n9 * 2 = 18\n#### 18"
    assert score("numeric", sample("So the answer is 18 dollars.", gold))[0] == 1.0
    assert score("numeric", sample("The total is $1,250.", "1250"))[0] == 1.0
    assert score("numeric", sample("about 17", gold))[:2] == (0.0, False)
    assert score("numeric", sample("no digits here", gold))[2] == "no number in the output"


def test_token_f1() -> None:
    value, passed, _ = score("token_f1", sample("the server listens on port 11434", "port 11434"))
    assert value is not None and 0.5 < value < 1.0 and passed


def test_retrieval_metrics_match_paths_at_boundaries() -> None:
    s = sample(
        "",
        hits=["corpora/ollama/docs/api.md", "corpora/ollama/docs/faq.mdx", "x/gpu.mdx"],
        source="docs/faq.mdx",
    )
    assert score("hit_at_k", s, k=1)[0] == 0.0
    assert score("hit_at_k", s, k=2)[0] == 1.0
    assert score("mrr", s)[0] == 0.5
    ndcg = score("ndcg_at_k", s, k=3)[0]
    assert ndcg is not None and abs(ndcg - 1 / 1.584962500721156) < 1e-6
    two_gold = sample("", hits=["a.md", "b.md"], sources=["b.md", "c.md"])
    assert score("recall_at_k", two_gold, k=2)[0] == 0.5
    assert score("hit_at_k", sample("", hits=["xfaq.mdx"], source="faq.mdx"))[0] == 0.0  # not a path boundary
    assert score("hit_at_k", sample("", hits=["a.md"]))[0] is None  # no gold → unscored


def test_unknown_scorer_and_bad_params() -> None:
    assert "exact_match" in scorer_names() and "ndcg_at_k" in scorer_names()
    with pytest.raises(ConfigError, match="unknown scorer 'bleu'"):
        build_scorer("bleu")
    with pytest.raises(ConfigError, match="bad parameters for scorer 'regex'"):
        build_scorer("regex", {"patern": "x"})


def test_a_failed_target_is_unscored_everywhere() -> None:
    failed = Sample(
        case=Case(id="c", input="q", expected="a"), output=Output(error="ProviderServerError: boom")
    )
    for name in ("exact_match", "token_f1", "numeric", "contains"):
        assert build_scorer(name).score(failed).value is None
