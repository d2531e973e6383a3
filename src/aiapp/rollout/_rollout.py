"""The rollout runtime: which arm serves a caller, what runs in the shadow, when a canary rolls back.

>>> rollout = Rollout(gateway)                       # the configured prompts and $AIAPP_HOME state
>>> reply = rollout.complete("support_answer", {"question": q, "context": ctx}, key=user_id)

One call:

1. **Assign** — the label's split picks the caller's arm by a hash of the key (sticky); the arm
   goes on the call's trace as ``rollout: {experiment, arm, role, key}`` (the key hashed). Each
   call is one trace: an ``app`` span with the variables, the primary's ``llm`` span and the
   shadow's nested under it.
2. **Reserve a shadow** — when the label names one, and the sample, ``max_in_flight`` and budget
   allow (otherwise it is dropped, never queued); the primary's trace records ``shadow: {pair}``.
3. **Call** the gateway with the arm's prompt and return its answer.
4. **Launch the shadow** in the background: the shadow prompt rendered with the same variables,
   on the shadow route, traced with ``shadow_of: {pair, trace_id}``; the primary never waits for it.
5. **Check the canary** every ``check_every`` calls of the experiment: when an arm regresses
   (:mod:`aiapp.rollout._canary`) its weight drops to 0 — persisted, so a restart keeps it — and
   a ``rollout``/``rollback`` span records why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiapp._rollout_config import key_hash
from aiapp.gateway import sync_method
from aiapp.prompts import Assignment, LabelEntry, Prompt, PromptRegistry
from aiapp.rollout._canary import ArmMetrics, Regression, arm_metrics, find_regression, window_start
from aiapp.rollout._shadow import Reservation, ShadowRunner, in_shadow
from aiapp.tracing import SpanRecord, new_id
from aiapp.types import CallOptions, Completion, Message

if TYPE_CHECKING:
    from aiapp.gateway import Gateway

__all__ = ["Rollback", "Rollout"]

log = logging.getLogger("aiapp.rollout")


@dataclass(frozen=True)
class Rollback:
    """An automatic rollback: which arm of which experiment, and the metric that tripped.

    Attributes:
        experiment: ``label/name``.
        arm: The canary's version (``v3``), now at weight 0.
        control: The arm it was compared with.
        regression: What regressed, by how much, on how many samples.
        trace_id: The trace of the ``rollout``/``rollback`` span that records it.
    """

    experiment: str
    arm: str
    control: str
    regression: Regression
    trace_id: str


class Rollout:
    """Splits, shadows and canaries of the labels in a prompts directory, over one gateway.

    Args:
        gateway: Makes (and traces) every primary and shadow call.
        registry: The prompts; default: the configured directory with rollbacks persisted under
            ``$AIAPP_HOME/rollout/state.json``.
        label: The label used when a call names none.
    """

    def __init__(
        self, gateway: Gateway, registry: PromptRegistry | None = None, *, label: str = "production"
    ) -> None:
        self.gateway = gateway
        self.registry = registry if registry is not None else PromptRegistry.from_settings(gateway.settings)
        self.label = label
        self.rollbacks: list[Rollback] = []
        self._shadows: dict[str, ShadowRunner] = {}
        self._calls: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- assignment --------------------------------------------------------------------------------

    def assign(self, name: str, *, label: str | None = None, key: str | None = None) -> Assignment:
        """The version serving ``name`` under ``label`` for the caller ``key`` (sticky)."""
        return self.registry.assign(name, label=label or self.label, key=key)

    def shadow_runner(self, entry: LabelEntry) -> ShadowRunner | None:
        """The shadow runner of a label entry (created on first use), or ``None`` when it has none."""
        if entry.shadow is None:
            return None
        with self._lock:
            runner = self._shadows.get(entry.experiment)
            if runner is None:
                target = entry.shadow.prompt or entry.name
                if entry.shadow.route:
                    target = f"{target} on {entry.shadow.route}"
                runner = self._shadows[entry.experiment] = ShadowRunner(entry.shadow, target=target)
            return runner

    # -- one call ----------------------------------------------------------------------------------

    def begin(
        self, assignment: Assignment, key: str | None = None
    ) -> tuple[dict[str, Any], Reservation | None]:
        """Trace attributes for the primary call and its shadow reservation (if any)."""
        attributes: dict[str, Any] = dict(assignment.attributes())
        entry = assignment.entry
        reservation = None
        if entry is not None and not in_shadow():
            runner = self.shadow_runner(entry)
            if runner is not None:
                reservation = runner.reserve(key)
                if reservation is not None:
                    attributes.update(reservation.attributes())
        return attributes, reservation

    def finish(
        self,
        assignment: Assignment,
        reservation: Reservation | None,
        variables: Mapping[str, Any] | None,
        *,
        route: str,
        trace_id: str | None,
        failed: bool = False,
        options: CallOptions | None = None,
    ) -> None:
        """After the primary answered (or failed): launch its shadow, count the call for the canary.

        Never raises: the primary's outcome is already decided.
        """
        try:
            if reservation is not None:
                if failed or variables is None:
                    reservation.release()
                else:
                    try:
                        self._launch_shadow(assignment, reservation, variables, route, trace_id, options)
                    except Exception:
                        reservation.release()  # e.g. the shadow prompt needs another variable
                        raise
            entry = assignment.entry
            if entry is not None and entry.canary is not None:
                with self._lock:
                    count = self._calls[entry.experiment] = self._calls.get(entry.experiment, 0) + 1
                if count % entry.canary.check_every == 0:
                    self.check(entry)
        except Exception as exc:  # a rollout problem never reaches the primary's caller
            log.warning("rollout bookkeeping failed for %s: %s", assignment.prompt.ref, exc)

    async def acomplete(
        self,
        name: str,
        variables: Mapping[str, Any] | None = None,
        *,
        label: str | None = None,
        key: str | None = None,
        model: str | None = None,
        options: CallOptions | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Completion:
        """Render the caller's arm of ``name`` and call the gateway (sync: :meth:`complete`).

        Args:
            name: The prompt name.
            variables: The prompt's variables (the shadow is rendered with the same ones).
            label: The label (default: the rollout's).
            key: The caller's key (user or session id): sticky assignment and sampling.
            model: The route; default: the prompt's ``model``, else the gateway's default route.
            options: Call options overlaid on the prompt's ``params``.
            metadata: Extra trace attributes.

        Raises:
            PromptError: unknown prompt or label, or bad variables.
            ProviderError: the primary call failed (a shadow's failure never raises).
        """
        assignment = self.assign(name, label=label, key=key)
        prompt = assignment.prompt
        messages = prompt.render(dict(variables or {}))
        route = model or prompt.model or self.gateway.settings.default_route
        attributes, reservation = self.begin(assignment, key)
        call_metadata = {**(metadata or {}), **attributes}
        if key is not None:  # a weighted route under this call is sticky by the same (hashed) key
            call_metadata.setdefault("rollout_key", key_hash(key))
        # One trace per request: this span (the variables, so arms can be paired on the same
        # input), the primary's llm span and the shadow's, both nested under it.
        with self.gateway.tracer.span(
            "app",
            f"rollout:{name}",
            route=route,
            prompt_ref=prompt.ref,
            prompt_hash=prompt.content_hash,
            input=dict(variables or {}),
        ) as span:
            span.attributes.update(attributes)
            try:
                completion = await self.gateway.acomplete(
                    messages,
                    model=route,
                    options=prompt.call_options(options),
                    prompt_ref=prompt.prompt_ref(),
                    metadata=call_metadata,
                )
            except BaseException:  # cancelled too: the reserved shadow slot is given back
                self.finish(assignment, reservation, variables, route=route, trace_id=None, failed=True)
                raise
            span.output = completion.text
            self.finish(
                assignment, reservation, variables, route=route, trace_id=completion.trace_id, options=options
            )
        return completion

    complete = sync_method(acomplete)

    def _launch_shadow(
        self,
        assignment: Assignment,
        reservation: Reservation,
        variables: Mapping[str, Any],
        route: str,
        trace_id: str | None,
        options: CallOptions | None,
    ) -> None:
        entry = assignment.entry
        assert entry is not None and entry.shadow is not None
        spec = entry.shadow
        shadow_prompt: Prompt = self.registry.get(spec.prompt) if spec.prompt else assignment.prompt
        messages: list[Message] = shadow_prompt.render(dict(variables))
        shadow_route = spec.route or shadow_prompt.model or route
        gateway = self.gateway
        link = {
            "experiment": entry.experiment,
            "arm": f"v{shadow_prompt.version}",
            "primary_arm": assignment.arm,
            "trace_id": trace_id,
            "role": "shadow",
        }

        async def run(pair: str) -> Completion:
            return await gateway.acomplete(
                messages,
                model=shadow_route,
                options=shadow_prompt.call_options(options),
                prompt_ref=shadow_prompt.prompt_ref(),
                metadata={"shadow_of": {**link, "pair": pair}},
            )

        reservation.launch(run)

    async def drain(self) -> None:
        """Wait for every running shadow (tests, shutdown)."""
        for runner in list(self._shadows.values()):
            await runner.drain()

    # -- canaries ----------------------------------------------------------------------------------

    def metrics(self, entry: LabelEntry) -> dict[str, ArmMetrics]:
        """Each arm's live metrics for a label entry (empty without a trace store)."""
        store = self.gateway.tracer.store
        if store is None:
            return {}
        since = window_start(entry.canary) if entry.canary is not None else None
        return arm_metrics(store, entry.experiment, since=since)

    def check(self, entry: LabelEntry | None = None) -> list[Rollback]:
        """Compare each canary with its control now; roll back the ones that regressed.

        Args:
            entry: One label entry; ``None`` checks every entry with a canary.

        Returns:
            The rollbacks made by this check.
        """
        self.registry.state.reload()
        entries = (
            [entry] if entry is not None else [e for e in self.registry.entries() if e.canary is not None]
        )
        made: list[Rollback] = []
        for item in entries:
            canary = item.canary
            version = item.canary_version
            if canary is None or version is None:
                continue
            if self.registry.overrides(item).get(version) == 0.0:
                continue  # already rolled back
            metrics = self.metrics(item)
            control = f"v{item.control_version}"
            regression = find_regression(
                canary,
                metrics.get(canary.arm, ArmMetrics(canary.arm)),
                metrics.get(control, ArmMetrics(control)),
            )
            if regression is not None:
                made.append(self._roll_back(item, version, control, regression))
        return made

    def _roll_back(self, entry: LabelEntry, version: int, control: str, regression: Regression) -> Rollback:
        reason = (
            f"{regression.metric} {regression.canary:.3f} vs control {regression.control:.3f} "
            f"(threshold +{regression.threshold:g}, n={regression.samples[0]}/{regression.samples[1]})"
        )
        self.registry.roll_back(entry, version, reason)
        trace_id = new_id()
        tracer = self.gateway.tracer
        tracer.write(
            SpanRecord(
                span_id=trace_id,
                trace_id=trace_id,
                kind="rollout",
                name="rollback",
                started_at=time.time(),
                prompt_ref=f"{entry.name}@v{version}",
                output=f"rolled back {entry.experiment} v{version}: {reason}",
                attributes={
                    "rollout": {"experiment": entry.experiment, "arm": f"v{version}", "role": "canary"},
                    "rollback": {
                        "metric": regression.metric,
                        "canary": regression.canary,
                        "control": regression.control,
                        "control_arm": control,
                        "threshold": regression.threshold,
                        "lower_bound": regression.lower_bound,
                        "samples": list(regression.samples),
                        "file": entry.path,
                        "line": entry.line,
                    },
                },
            )
        )
        if tracer.store is not None:
            tracer.store.flush()
        log.warning("rolled back %s v%d: %s", entry.experiment, version, reason)
        event = Rollback(entry.experiment, f"v{version}", control, regression, trace_id)
        self.rollbacks.append(event)
        return event
