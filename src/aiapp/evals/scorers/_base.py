"""The scorer seam and its registry.

A scorer is an object with a ``name`` and ``score(sample) -> Score`` (and optionally an async
``ascore`` for scorers that call models). Suites name scorers by registry key with parameters::

    scorers:
      - exact_match: {normalize: true}
      - numeric: {tolerance: 0.01}
      - judge_rubric: {criteria: "...", judge: judge}

Register your own with ``@scorer("name")`` on a factory (a class or function taking keyword
parameters and returning a scorer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from aiapp.errors import ConfigError
from aiapp.evals._score import Sample, Score


class Scorer:
    """Base class for scorers. Subclasses implement :meth:`score` or :meth:`ascore`.

    Attributes:
        name: The metric name used in reports (defaults to the registry key).
        threshold: The value at or above which a case passes (``passed``), when meaningful.
    """

    name: str = "scorer"
    threshold: float | None = None
    #: Scorers that call models are slow and cost money; the runner counts them in dry runs.
    calls_models: bool = False
    #: CPU-heavy sync scorers (embeddings) run in a worker thread; cheap ones run inline, since a
    #: thread hop per case costs more than exact match itself.
    blocking: bool = False

    def score(self, sample: Sample) -> Score:
        """Score one sample."""
        raise NotImplementedError

    async def ascore(self, sample: Sample) -> Score:
        """Async :meth:`score`: inline for cheap scorers, in a worker thread for ``blocking`` ones."""
        if type(self).score is Scorer.score:
            raise NotImplementedError(f"{type(self).__name__} implements neither score nor ascore")
        if not self.blocking and not self.calls_models:
            return self.score(sample)
        return await asyncio.to_thread(self.score, sample)

    def make(self, value: float, reason: str = "", **metadata: Any) -> Score:
        """A scored result, with ``passed`` from :attr:`threshold` when there is one."""
        passed = None if self.threshold is None else value >= self.threshold
        return Score(scorer=self.name, value=float(value), passed=passed, reason=reason, metadata=metadata)

    def unscored(self, reason: str, **metadata: Any) -> Score:
        """An unscored result with its reason."""
        return Score.unscored(self.name, reason, **metadata)


ScorerFactory = Callable[..., Scorer]
_SCORERS: dict[str, ScorerFactory] = {}


def scorer(name: str) -> Callable[[ScorerFactory], ScorerFactory]:
    """Decorator: register a scorer factory under ``name``."""

    def decorate(factory: ScorerFactory) -> ScorerFactory:
        _SCORERS[name] = factory
        return factory

    return decorate


def scorer_names() -> list[str]:
    """Registered scorer names."""
    _load_builtins()
    return sorted(_SCORERS)


def build_scorer(name: str, params: dict[str, Any] | None = None, **context: Any) -> Scorer:
    """Instantiate a registered scorer; ``context`` (gateway, embedder ...) is passed when accepted.

    Raises:
        ConfigError: unknown scorer or bad parameters, naming the scorer.
    """
    _load_builtins()
    factory = _SCORERS.get(name)
    if factory is None:
        raise ConfigError(f"unknown scorer {name!r} (known: {', '.join(sorted(_SCORERS))})", field="scorers")
    import inspect

    kwargs = dict(params or {})
    try:
        accepted: Mapping[str, inspect.Parameter] = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepted = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    for key, value in context.items():
        if (key in accepted or takes_any) and key not in kwargs:
            kwargs[key] = value
    try:
        instance = factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for scorer {name!r}: {exc}", field="scorers") from exc
    if instance.name == "scorer":
        instance.name = name
    return instance


def _load_builtins() -> None:
    # Importing the modules registers their scorers.
    from aiapp.evals.scorers import _deterministic, _human, _judge, _rag, _ragas, _retrieval  # noqa: F401
