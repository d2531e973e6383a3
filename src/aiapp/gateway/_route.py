"""A route: deployments tried in order until one answers (ordered failover).

A :class:`RouteModel` is itself a :class:`Model`, so caches and guards can wrap it. Retryable
failures (429, 5xx, timeouts, garbage) move on to the next deployment; non-retryable ones (bad
request, missing key) stop at once. Streams fail over only before their first chunk: once text has
reached the caller, switching models would splice two different replies.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence

from aiapp.errors import AllDeploymentsFailedError, Failure, ProviderError
from aiapp.gateway._errors import map_exception
from aiapp.gateway._model import Model
from aiapp.tracing import annotate
from aiapp.types import CallOptions, Completion, Message, StreamChunk


class RouteModel(Model):
    """Ordered failover over named deployments.

    Args:
        name: The route's name (used in errors and traces).
        deployments: ``(label, model)`` pairs in the order to try.
    """

    def __init__(self, name: str, deployments: Sequence[tuple[str, Model]]) -> None:
        if not deployments:
            raise ValueError(f"route {name!r} has no deployments")
        self.name = name
        self.deployments = list(deployments)
        self.info = deployments[0][1].info

    def _fail(self, label: str, exc: BaseException, failures: list[Failure]) -> ProviderError:
        error = map_exception(exc, route=self.name, deployment=label)
        failures.append(Failure(label, error))
        return error

    def _finish(
        self, completion: Completion, label: str, failures: list[Failure], started: float
    ) -> Completion:
        completion.route = self.name
        completion.deployment = label
        completion.attempts = len(failures) + 1
        completion.tried = (*(f.deployment for f in failures), label)
        completion.latency_ms = (time.perf_counter() - started) * 1000.0
        return completion

    def _give_up(self, failures: list[Failure]) -> ProviderError:
        if len(failures) == 1:
            return failures[0].error
        return AllDeploymentsFailedError(self.name, failures)

    def complete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """Try each deployment in order."""
        failures: list[Failure] = []
        started = time.perf_counter()
        for label, model in self.deployments:
            try:
                completion = model.complete(messages, options)
            except Exception as exc:
                if not self._fail(label, exc, failures).retryable:
                    break
                continue
            return self._finish(completion, label, failures, started)
        raise self._give_up(failures)

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """Async :meth:`complete`."""
        failures: list[Failure] = []
        started = time.perf_counter()
        for label, model in self.deployments:
            try:
                completion = await model.acomplete(messages, options)
            except Exception as exc:
                if not self._fail(label, exc, failures).retryable:
                    break
                continue
            return self._finish(completion, label, failures, started)
        raise self._give_up(failures)

    def stream(
        self,
        messages: Sequence[Message],
        options: CallOptions | None = None,
        *,
        tried: list[str] | None = None,
    ) -> Iterator[StreamChunk]:
        """Stream from the first deployment that produces a first chunk; ``tried`` collects the labels."""
        failures: list[Failure] = []
        tried = [] if tried is None else tried
        annotate(tried=tried)  # the gateway's trace reads the deployments tried from here
        for label, model in self.deployments:
            tried.append(label)
            iterator = iter(model.stream(messages, options))
            try:
                first = next(iterator)
            except StopIteration:
                return
            except Exception as exc:
                if not self._fail(label, exc, failures).retryable:
                    break
                continue
            yield first
            try:
                yield from iterator
            except Exception as exc:
                raise map_exception(exc, route=self.name, deployment=label) from exc
            return
        raise self._give_up(failures)

    async def astream(
        self,
        messages: Sequence[Message],
        options: CallOptions | None = None,
        *,
        tried: list[str] | None = None,
    ) -> AsyncIterator[StreamChunk]:
        """Async :meth:`stream`."""
        failures: list[Failure] = []
        tried = [] if tried is None else tried
        annotate(tried=tried)  # the gateway's trace reads the deployments tried from here
        for label, model in self.deployments:
            tried.append(label)
            iterator = model.astream(messages, options).__aiter__()
            try:
                first = await iterator.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                if not self._fail(label, exc, failures).retryable:
                    break
                continue
            yield first
            try:
                async for chunk in iterator:
                    yield chunk
            except Exception as exc:
                raise map_exception(exc, route=self.name, deployment=label) from exc
            return
        raise self._give_up(failures)

    def close(self) -> None:
        """Close every deployment's model."""
        for _, model in self.deployments:
            model.close()
