"""The plumbing of the LLM-as-judge scorers: asking a judge route, knowing when there is none, voting.

- :func:`ask_judge` calls a route at temperature 0 with a schema-constrained ``response_format``,
  parses the reply with :meth:`~aiapp.types.Completion.parse` and, on a reply that does not parse,
  sends the error back a bounded number of times. It never raises for a judge's failure: the reply
  says what went wrong and keeps the raw text.
- :func:`judge_unavailable` tells, without calling anything, why a route cannot judge (missing,
  the offline ``local/extractive`` model, no API key), so scorers return unscored with that reason.
- :class:`JudgeScorer` is the base of ``judge_rubric``, ``judge_reference`` and ``judge_pairwise``:
  several judges vote, and human agreement decides whether the judge may gate.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from aiapp.errors import AiappError, ConfigError, OutputParseError
from aiapp.evals._score import Output, Sample, Score
from aiapp.evals.scorers._base import Scorer
from aiapp.gateway import run_sync
from aiapp.types import CallOptions, Message, ResponseFormat

if TYPE_CHECKING:
    from aiapp.config import Deployment
    from aiapp.gateway import Gateway, Model

_T = TypeVar("_T", bound=BaseModel)
_R = TypeVar("_R")

EXTRACTIVE_MODEL = "local/extractive"
_RETRY = (
    "Your reply could not be used: {error}. Reply again with only a JSON object that matches this "
    "JSON schema:\n{schema}"
)


# -- asking a judge -----------------------------------------------------------------------------


@dataclass
class JudgeReply(Generic[_T]):
    """What one judge route answered.

    Attributes:
        route: The judge route.
        parsed: The validated reply, or ``None`` when the judge failed.
        raw: The last raw reply text (kept for the report when parsing failed).
        attempts: Calls made (1 + retries used).
        error: Why ``parsed`` is ``None``.
        model: The deployment that answered.
        errors: Every parse error seen, in order.
    """

    route: str
    parsed: _T | None
    raw: str = ""
    attempts: int = 0
    error: str | None = None
    model: str | None = None
    errors: list[str] = field(default_factory=list)


async def ask_judge(
    gateway: Gateway,
    route: str,
    messages: Sequence[Message],
    schema: type[_T],
    *,
    retries: int = 1,
    check: Callable[[_T], str | None] | None = None,
) -> JudgeReply[_T]:
    """Ask a judge route for a reply matching ``schema``, re-asking with the error when it does not parse.

    Args:
        gateway: The gateway to call.
        route: The judge route.
        messages: The conversation to send.
        schema: The pydantic model the reply must match (also sent as ``response_format``).
        retries: How many times to re-ask after an unusable reply.
        check: Extra validation of a parsed reply; returns a problem to send back, or ``None``.

    Returns:
        The reply; ``parsed`` is ``None`` (with ``error``) when the judge failed or never parsed.
    """
    convo = list(messages)
    options = CallOptions(response_format=ResponseFormat.from_model(schema), temperature=0)
    reply: JudgeReply[_T] = JudgeReply(route=route, parsed=None)
    for _ in range(max(0, retries) + 1):
        reply.attempts += 1
        try:
            completion = await gateway.acomplete(
                convo, model=route, options=options, metadata={"purpose": "eval judge"}
            )
        except AiappError as exc:
            reply.error = f"judge route {route!r} failed: {type(exc).__name__}: {exc}"
            return reply
        reply.raw = completion.text
        reply.model = completion.deployment or completion.model or None
        try:
            parsed = completion.parse(schema)
            problem = check(parsed) if check is not None else None
            if problem:
                raise OutputParseError(problem, raw=completion.text)
        except OutputParseError as exc:
            message = str(exc).split("\nraw reply:", 1)[0]
            reply.errors.append(message)
            convo += [
                Message.assistant(completion.text),
                Message.user(_RETRY.format(error=message, schema=json.dumps(schema.model_json_schema()))),
            ]
            continue
        reply.parsed = parsed
        return reply
    reply.error = f"judge reply unusable after {reply.attempts} attempt(s): {reply.errors[-1]}"
    return reply


def judge_unavailable(gateway: Gateway | None, route: str) -> str | None:
    """Why ``route`` cannot judge, or ``None`` when it can (as far as can be told without calling it).

    A route cannot judge when it does not exist, when it is served only by the offline
    ``local/extractive`` model, or when every deployment lacks its API key.
    """
    hint = (
        f"set up the `{route}` route in configs/aiapp.yaml with an LLM "
        "(the shipped one is openai/gpt-4o-mini and needs OPENAI_API_KEY)"
    )
    if gateway is None:
        return f"no judge model configured: the scorer was given no gateway; {hint}"
    try:
        model = _unwrap(gateway.model(route))
    except AiappError as exc:
        return f"no judge model configured: {exc}; {hint}"
    from aiapp.gateway import RouteModel

    if not isinstance(model, RouteModel):  # a model injected with Gateway(models=...)
        if model.name.split("@", 1)[0] == EXTRACTIVE_MODEL:
            return (
                f"judge route {route!r} is the offline {EXTRACTIVE_MODEL} model, which cannot judge; {hint}"
            )
        return None
    try:
        deployments = gateway.route_config(route).deployments
    except ConfigError:
        return None
    problems = [_deployment_problem(d) for d in deployments]
    if all(problems):
        if all(d.model == EXTRACTIVE_MODEL for d in deployments):
            return (
                f"judge route {route!r} is the offline {EXTRACTIVE_MODEL} model, which cannot judge; {hint}"
            )
        return f"no judge model configured: route {route!r} — {'; '.join(p for p in problems if p)}; {hint}"
    return None


def _deployment_problem(deployment: Deployment) -> str | None:
    if deployment.model == EXTRACTIVE_MODEL:
        return f"{EXTRACTIVE_MODEL} cannot judge"
    if deployment.kind == "openai":
        env = deployment.api_key_env or ("OPENAI_API_KEY" if deployment.api_base is None else None)
        if env and deployment.api_base is None and not os.environ.get(env):
            return f"{deployment.model} needs {env}, which is not set"
    elif (
        deployment.kind == "litellm" and deployment.api_key_env and not os.environ.get(deployment.api_key_env)
    ):
        return f"{deployment.model} needs {deployment.api_key_env}, which is not set"
    return None


def _unwrap(model: Model) -> Model:
    """The route model under any middleware layers (caches, guards) that wrap it."""
    from aiapp.gateway import Model, RouteModel

    for _ in range(16):
        if isinstance(model, RouteModel):
            return model
        inner = next(
            (
                getattr(model, attr)
                for attr in ("inner", "model", "wrapped", "_inner", "_model")
                if isinstance(getattr(model, attr, None), Model)
            ),
            None,
        )
        if inner is None:
            return model
        model = inner
    return model


# -- the judge scorer base ----------------------------------------------------------------------


class JudgeScorer(Scorer):
    """Base of the LLM-as-judge scorers: judge routes, retries, voting and human-agreement gating.

    Args:
        gateway: The gateway that serves the judge routes (passed by the runner as context).
        judge: The judge route (default ``judge``).
        judges: Several judge routes that vote; overrides ``judge``.
        retries: Re-asks after an unusable judge reply.
        min_agreement: The human agreement (κ or α) the judge needs before it may gate CI.
        agreement: The measured human agreement, when known.
    """

    calls_models = True

    def __init__(
        self,
        *,
        gateway: Gateway | None = None,
        judge: str = "judge",
        judges: Sequence[str] | None = None,
        retries: int = 1,
        min_agreement: float | None = None,
        agreement: float | None = None,
    ) -> None:
        if retries < 0:
            raise ConfigError("retries must be 0 or more", field="scorers")
        self.gateway = gateway
        self.routes = list(judges) if judges else [judge]
        if not self.routes:
            raise ConfigError("judges must name at least one route", field="scorers")
        self.retries = retries
        self.min_agreement = min_agreement
        self.agreement = agreement
        self.agreement_method: str | None = None

    # -- human agreement --------------------------------------------------------------------

    @property
    def may_gate(self) -> bool:
        """Whether the gate may use this judge: always without ``min_agreement``, else only when validated."""
        if self.min_agreement is None:
            return True
        return self.agreement is not None and self.agreement >= self.min_agreement

    def set_agreement(self, value: float | None, *, method: str | None = None) -> None:
        """Record the measured judge-vs-human agreement (see ``judge_human_agreement``)."""
        self.agreement = value
        self.agreement_method = method

    def gate_info(self) -> dict[str, Any]:
        """The gating facts every score of this judge carries in its metadata."""
        if self.min_agreement is None:
            note = "no human-agreement requirement (min_agreement) set"
        elif self.agreement is None:
            note = f"not validated: needs human agreement ≥ {self.min_agreement:g}, none measured"
        elif self.may_gate:
            note = f"validated: agreement {self.agreement:.2f} ≥ {self.min_agreement:g}"
        else:
            note = f"not validated: agreement {self.agreement:.2f} < {self.min_agreement:g}"
        return {
            "may_gate": self.may_gate,
            "agreement": self.agreement,
            "agreement_method": self.agreement_method,
            "min_agreement": self.min_agreement,
            "gate_note": note,
        }

    # -- scoring ----------------------------------------------------------------------------

    def score(self, sample: Sample) -> Score:
        """Sync :meth:`ascore`."""
        return run_sync(self.ascore(sample))

    async def ascore(self, sample: Sample) -> Score:
        """Ask every judge about the sample and combine their verdicts."""
        if sample.output.error is not None:
            return self.unscored(f"target failed: {sample.output.error}", **self.gate_info())
        missing = self.missing_input(sample)
        if missing:
            return self.unscored(missing, **self.gate_info())
        return await self.run_judges(lambda route: self.judge_once(route, sample))

    def missing_input(self, sample: Sample) -> str | None:
        """Why a sample cannot be judged by this scorer (e.g. no reference), or ``None``."""
        return None

    async def judge_once(self, route: str, sample: Sample) -> Score:
        """One judge's score for one sample."""
        raise NotImplementedError

    async def run_judges(self, ask: Callable[[str], Awaitable[Score]]) -> Score:
        """Run ``ask`` for every available judge route and combine the scores."""
        unavailable = {route: judge_unavailable(self.gateway, route) for route in self.routes}
        ready = [route for route, why in unavailable.items() if why is None]
        results = dict(zip(ready, await asyncio.gather(*(ask(route) for route in ready)), strict=True))
        per_judge = [
            (route, results[route] if route in results else self.unscored(str(unavailable[route])))
            for route in self.routes
        ]
        return self.combine(per_judge)

    def combine(self, per_judge: Sequence[tuple[str, Score]]) -> Score:
        """One judge: its score. Several: mean value of those that scored, majority ``passed``."""
        gate = self.gate_info()
        if len(per_judge) == 1:
            route, only = per_judge[0]
            return only.model_copy(update={"metadata": {"judge": route, **only.metadata, **gate}})
        judges = {
            route: {"value": s.value, "passed": s.passed, "reason": s.reason, **s.metadata}
            for route, s in per_judge
        }
        scored = [s for _, s in per_judge if s.scored]
        if not scored:
            reasons = "; ".join(f"{route}: {s.reason}" for route, s in per_judge)
            return self.unscored(f"no judge could score: {reasons}", judges=judges, **gate)
        value = sum(float(s.value or 0.0) for s in scored) / len(scored)
        votes = [s.passed for s in scored if s.passed is not None]
        yes, no = sum(1 for v in votes if v), sum(1 for v in votes if not v)
        if yes != no:
            passed: bool | None = yes > no
        else:  # a tied vote falls back to the mean against the threshold
            passed = None if self.threshold is None or not votes else value >= self.threshold
        reason = (
            f"{yes}/{len(votes)} judges pass, mean {value:.2f} "
            f"({len(scored)} of {len(per_judge)} judges scored)"
        )
        return Score(
            scorer=self.name,
            value=value,
            passed=passed,
            reason=reason,
            metadata={"judges": judges, "scored_judges": len(scored), **gate},
        )

    def failed(self, reply: JudgeReply[Any]) -> Score:
        """The unscored result of a judge that did not produce a usable reply."""
        return self.unscored(
            reply.error or "judge failed",
            model=reply.model,
            raw=reply.raw,
            attempts=reply.attempts,
            parse_errors=reply.errors,
        )


def block(tag: str, text: str) -> str:
    """``text`` inside ``<tag>`` ... ``</tag>`` lines (how judge prompts delimit inputs)."""
    return f"<{tag}>\n{text.strip()}\n</{tag}>"


def context_text(output: Output, *, max_chars: int = 12_000) -> str:
    """Retrieved hits as numbered passages (``[1] source`` then text), cut at ``max_chars``."""
    parts: list[str] = []
    used = 0
    for n, hit in enumerate(output.hits, start=1):
        header = f"[{n}] {hit.source}".rstrip()
        part = f"{header}\n{hit.text.strip()}"
        if used + len(part) > max_chars:
            parts.append(part[: max(0, max_chars - used)])
            break
        parts.append(part)
        used += len(part)
    return "\n\n".join(parts)
