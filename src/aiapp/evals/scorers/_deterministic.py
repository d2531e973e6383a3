"""Deterministic scorers: exact match, regex, contains, JSON, numeric, token F1, embedding similarity."""

from __future__ import annotations

import json
import re
from typing import Any

from aiapp.evals._score import Sample, Score
from aiapp.evals.scorers._base import Scorer, scorer
from aiapp.evals.scorers._text import normalize_answer, numbers, references, token_f1


def _unscored_if_failed(s: Scorer, sample: Sample) -> Score | None:
    if sample.output.error is not None:
        return s.unscored(f"target failed: {sample.output.error}")
    return None


def _references_or_unscored(s: Scorer, sample: Sample) -> list[str] | Score:
    """The case's reference answers, or why the sample cannot be scored against them."""
    if (failed := _unscored_if_failed(s, sample)) is not None:
        return failed
    return references(sample.case.expected) or s.unscored("case has no expected answer")


@scorer("exact_match")
class ExactMatch(Scorer):
    """1 if the answer equals a reference (any of a list), after normalization by default.

    Args:
        normalize: Compare SQuAD-normalized text (case, punctuation, articles, whitespace).
    """

    def __init__(self, *, normalize: bool = True) -> None:
        self.normalize = normalize
        self.threshold = 1.0

    def score(self, sample: Sample) -> Score:
        """Compare the output with the case's expected value(s)."""
        refs = _references_or_unscored(self, sample)
        if isinstance(refs, Score):
            return refs
        norm = normalize_answer if self.normalize else str.strip
        got = norm(sample.output.text)
        hit = next((r for r in refs if norm(r) == got), None)
        return self.make(
            1.0 if hit is not None else 0.0, "matched" if hit is not None else "no reference matched"
        )


@scorer("regex")
class Regex(Scorer):
    """1 if the answer matches ``pattern`` (``re.search``).

    Args:
        pattern: A Python regular expression.
        ignore_case: Case-insensitive matching.
    """

    def __init__(self, *, pattern: str, ignore_case: bool = False) -> None:
        self.pattern = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        self.threshold = 1.0

    def score(self, sample: Sample) -> Score:
        """Search the output for the pattern."""
        if (failed := _unscored_if_failed(self, sample)) is not None:
            return failed
        match = self.pattern.search(sample.output.text)
        return self.make(float(match is not None), f"matched {match.group(0)!r}" if match else "no match")


@scorer("contains")
class Contains(Scorer):
    """1 if the answer contains the value(s): ``all`` of them, or ``any_of`` them.

    Args:
        value: A string or list; defaults to the case's expected value(s).
        mode: ``any`` (default) or ``all``.
        ignore_case: Case-insensitive comparison (default on).
    """

    def __init__(
        self, *, value: str | list[str] | None = None, mode: str = "any", ignore_case: bool = True
    ) -> None:
        self.value = value
        self.mode = mode
        self.ignore_case = ignore_case
        self.threshold = 1.0

    def score(self, sample: Sample) -> Score:
        """Look for the values in the output."""
        if (failed := _unscored_if_failed(self, sample)) is not None:
            return failed
        wanted = references(self.value if self.value is not None else sample.case.expected)
        if not wanted:
            return self.unscored("nothing to look for: no value and no expected answer")
        text = sample.output.text.lower() if self.ignore_case else sample.output.text
        found = [w for w in wanted if (w.lower() if self.ignore_case else w) in text]
        ok = bool(found) if self.mode == "any" else len(found) == len(wanted)
        return self.make(float(ok), f"found {found}" if found else "none found")


@scorer("any_of")
def any_of(*, values: list[str], ignore_case: bool = True) -> Scorer:
    """1 if the answer contains any of ``values``."""
    return Contains(value=values, mode="any", ignore_case=ignore_case)


def _parse_json(text: str) -> tuple[Any, str | None]:
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`")
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else stripped
    try:
        return json.loads(stripped), None
    except json.JSONDecodeError as exc:
        return None, f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"


@scorer("json_equal")
class JsonEqual(Scorer):
    """1 if the answer parses as JSON equal to the expected value (key order ignored).

    Args:
        ignore_keys: Top-level keys to drop from both sides before comparing.
    """

    def __init__(self, *, ignore_keys: list[str] | None = None) -> None:
        self.ignore_keys = set(ignore_keys or [])
        self.threshold = 1.0

    def score(self, sample: Sample) -> Score:
        """Parse and compare."""
        if (failed := _unscored_if_failed(self, sample)) is not None:
            return failed
        expected = sample.case.expected
        if isinstance(expected, str):
            expected, error = _parse_json(expected)
            if error:
                return self.unscored(f"expected value is {error}")
        got, error = _parse_json(sample.output.text)
        if error:
            return self.make(0.0, f"output is {error}")
        if isinstance(got, dict) and isinstance(expected, dict) and self.ignore_keys:
            got = {k: v for k, v in got.items() if k not in self.ignore_keys}
            expected = {k: v for k, v in expected.items() if k not in self.ignore_keys}
        return self.make(float(got == expected), "equal" if got == expected else "differs")


@scorer("json_schema")
class JsonSchema(Scorer):
    """1 if the answer is JSON valid against ``schema`` (JSON Schema, draft 2020-12).

    Args:
        schema: The JSON schema (inline mapping).
    """

    def __init__(self, *, schema: dict[str, Any]) -> None:
        from aiapp.prompts._schema import schema_problem

        problem = schema_problem(schema)
        if problem is not None:
            raise ValueError(f"invalid JSON schema: {problem}")
        self.schema = schema
        self.threshold = 1.0

    def score(self, sample: Sample) -> Score:
        """Parse and validate."""
        from aiapp.prompts._schema import schema_errors

        if (failed := _unscored_if_failed(self, sample)) is not None:
            return failed
        got, error = _parse_json(sample.output.text)
        if error:
            return self.make(0.0, f"output is {error}")
        errors = schema_errors(got, self.schema)
        if errors:
            return self.make(0.0, errors[0], errors=len(errors))
        return self.make(1.0, "valid")


@scorer("numeric")
class Numeric(Scorer):
    """1 if the answer's number equals the expected number within a tolerance (e.g. GSM8K).

    The expected number is the text after ``####`` when present (GSM8K's format), else the last
    number in the expected value. The answer's number is the last number in the output (or the one
    after ``####``/"answer is" when present).

    Args:
        tolerance: Absolute tolerance.
        relative: Relative tolerance (either tolerance passing is enough).
    """

    def __init__(self, *, tolerance: float = 1e-6, relative: float = 0.0) -> None:
        self.tolerance = tolerance
        self.relative = relative
        self.threshold = 1.0

    @staticmethod
    def final_number(text: str) -> float | None:
        """The final answer number of a text."""
        for marker in ("####", "answer is", "Answer:"):
            if marker in text:
                found = numbers(text.rsplit(marker, 1)[1])
                if found:
                    return found[0]
        found = numbers(text)
        return found[-1] if found else None

    def score(self, sample: Sample) -> Score:
        """Compare final numbers."""
        if (failed := _unscored_if_failed(self, sample)) is not None:
            return failed
        expected = sample.case.expected
        want = (
            float(expected) if isinstance(expected, int | float) else self.final_number(str(expected or ""))
        )
        if want is None:
            return self.unscored("expected value has no number")
        got = self.final_number(sample.output.text)
        if got is None:
            return self.make(0.0, "no number in the output")
        ok = abs(got - want) <= max(self.tolerance, self.relative * abs(want))
        return self.make(float(ok), f"got {got:g}, expected {want:g}")


@scorer("token_f1")
class TokenF1(Scorer):
    """SQuAD token-overlap F1 against the best-matching reference.

    Args:
        threshold: F1 at or above which a case passes (default 0.5).
    """

    def __init__(self, *, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def score(self, sample: Sample) -> Score:
        """Best F1 over the references."""
        refs = _references_or_unscored(self, sample)
        if isinstance(refs, Score):
            return refs
        best = max(token_f1(sample.output.text, ref) for ref in refs)
        return self.make(best, f"F1 {best:.2f}")


@scorer("embedding_similarity")
class EmbeddingSimilarity(Scorer):
    """Cosine similarity between the answer and the best reference, with the local MiniLM by default.

    Args:
        threshold: Similarity at or above which a case passes (default 0.7).
        embedder: An embedder name for :func:`aiapp.gateway.embedders.build_embedder`.
    """

    def __init__(self, *, threshold: float = 0.7, embedder: str | None = None) -> None:
        from aiapp.gateway.embedders import DEFAULT_EMBEDDER, build_embedder

        self.blocking = True
        self.threshold = threshold
        self.embedder = build_embedder(embedder or DEFAULT_EMBEDDER)

    def score(self, sample: Sample) -> Score:
        """Embed answer and references; take the best cosine."""
        refs = _references_or_unscored(self, sample)
        if isinstance(refs, Score):
            return refs
        if not sample.output.text.strip():
            return self.make(0.0, "empty answer")
        vectors = self.embedder.embed([sample.output.text, *refs])
        best = float((vectors[1:] @ vectors[0]).max())
        return self.make(max(0.0, best), f"cosine {best:.2f}")
