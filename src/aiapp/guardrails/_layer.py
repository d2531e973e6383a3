"""Guards as gateway middleware: :class:`GuardedModel` wraps a route's model (layer order 30, outermost).

Input guards run on each user message before the call; output guards on the reply, or on a
stream through a :class:`~aiapp.guardrails._stream.StreamGate`. Every verdict (name, action,
score, latency, redaction placeholders — never the redacted values) goes into the call's trace
as the ``guards`` attribute. A block raises :class:`~aiapp.errors.GuardrailError`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from aiapp.errors import GuardrailError
from aiapp.gateway import Document, LayerContext, current_documents, register_layer, with_documents
from aiapp.gateway._model import Model, collect, completion_to_chunks
from aiapp.guardrails._redact import RedactionMap
from aiapp.guardrails._stack import GuardReport, InputGuards, OutputGuards
from aiapp.guardrails._stream import StreamGate, merge_verdicts
from aiapp.guardrails._verdict import Verdict
from aiapp.tracing import annotate
from aiapp.types import CallOptions, Completion, Message, StreamChunk, Usage

__all__ = ["GuardedModel", "grounding_documents", "guard_layer"]


@contextmanager
def grounding_documents(documents: Sequence[Document | str]) -> Iterator[None]:
    """Give guards the retrieved context for gateway calls made inside the block.

    The same as :func:`aiapp.gateway.with_documents`. Without it, the grounding guard reads
    ``<context>...</context>`` blocks from the messages, and retrieved text is judged only as
    part of the user message.
    """
    with with_documents(documents):
        yield


def _document_texts() -> tuple[str, ...]:
    return tuple(d.text for d in current_documents())


class _Call:
    """Per-call state: the placeholder map and the verdicts recorded in the trace."""

    def __init__(self) -> None:
        self.redactions = RedactionMap()
        self.notes: list[dict[str, Any]] = []
        annotate(guards=self.notes)

    def record(self, verdicts: Sequence[Verdict], document: Document | None = None) -> None:
        if document is None:
            self.notes.extend(v.to_trace() for v in verdicts)
            return
        where = {"source": document.source, "chunk_id": document.chunk_id}
        self.notes.extend({**v.to_trace(), "stage": "retrieved", "document": where} for v in verdicts)


class GuardedModel(Model):
    """A model whose calls pass input and output guards.

    Args:
        inner: The model to guard.
        input: Guards on user messages.
        output: Guards on replies.
        route: The route's name (for errors and verdicts).
        retrieved: What a blocking input guard does to a retrieved document passed with the call
            (:func:`aiapp.gateway.with_documents`): ``block`` the call, naming the document, or
            ``drop`` it from the prompt and answer from the rest.
    """

    def __init__(
        self,
        inner: Model,
        *,
        input: InputGuards,
        output: OutputGuards,
        route: str | None = None,
        retrieved: Literal["block", "drop"] = "block",
    ) -> None:
        self.inner = inner
        self.input = input
        self.output = output
        self.route = route
        self.retrieved = retrieved
        self.name = inner.name
        self.info = inner.info

    # -- input -------------------------------------------------------------------------------------

    def _apply_input(
        self, messages: Sequence[Message], call: _Call, reports: list[GuardReport]
    ) -> list[Message] | str:
        out: list[Message] = []
        for message, report in zip(messages, reports, strict=True):
            if report is _SKIP:
                out.append(message)
                continue
            call.record(report.verdicts)
            if report.fallback is not None:
                return report.fallback
            out.append(
                message
                if report.text == message.content
                else message.model_copy(update={"content": report.text})
            )
        return out

    async def _screen_documents(self, messages: Sequence[Message], call: _Call) -> Sequence[Message]:
        """Judge each retrieved document on its own, so a poisoned one is named (or dropped)."""
        documents = current_documents()
        if not documents or not self.input.guards:
            return messages
        dropped: list[Document] = []
        for document in documents:
            try:
                await self.input.acheck(
                    document.text, messages=messages, route=self.route, redactions=RedactionMap()
                )
            except GuardrailError as exc:
                call.record([v for v in exc.verdicts if isinstance(v, Verdict)], document)
                if self.retrieved == "drop":
                    dropped.append(document)
                    continue
                raise GuardrailError(
                    guard=exc.guard,
                    reason=f"{exc.reason}; it came from retrieved document {document.source or '?'} "
                    f"(chunk {document.chunk_id or '?'})",
                    stage="retrieved context",
                    route=self.route,
                    verdicts=exc.verdicts,
                ) from exc
        if not dropped:
            return messages
        annotate(dropped_documents=[{"source": d.source, "chunk_id": d.chunk_id} for d in dropped])
        return [_without(m, dropped) if m.role == "user" else m for m in messages]

    async def _acheck_input(self, messages: Sequence[Message], call: _Call) -> list[Message] | str:
        messages = await self._screen_documents(messages, call)
        # With the retrieved documents judged on their own, a user message is judged on the
        # user's own words: its <context> blocks are set aside and put back afterwards.
        split = bool(current_documents())
        reports = []
        for m in messages:
            if m.role != "user" or not m.content or not self.input.guards:
                reports.append(_SKIP)
                continue
            own, rebuild = _set_aside_context(m.content) if split else (m.content, None)
            try:
                report = await self.input.acheck(
                    own, messages=messages, route=self.route, redactions=call.redactions
                )
            except GuardrailError as exc:
                call.record([v for v in exc.verdicts if isinstance(v, Verdict)])
                raise
            reports.append(
                report if rebuild is None else dataclasses.replace(report, text=rebuild(report.text))
            )
        return self._apply_input(messages, call, reports)

    # -- output ------------------------------------------------------------------------------------

    def _judge(
        self,
        completion: Completion,
        messages: Sequence[Message],
        call: _Call,
        report: GuardReport,
        attempt: int,
    ) -> Completion | list[Message]:
        """Apply an output report: the finished completion, or the messages for a re-ask."""
        call.record(report.verdicts)
        if report.fallback is not None:
            return completion.model_copy(update={"text": report.fallback, "finish_reason": "content_filter"})
        if report.reask is not None:
            verdict = report.reask
            if attempt >= self.output.max_reasks:
                raise GuardrailError(
                    guard=verdict.name,
                    reason=f"{verdict.reason} (still failing after {attempt} re-ask{'s' if attempt != 1 else ''})",
                    stage="output",
                    route=self.route,
                    verdicts=tuple(report.verdicts),
                )
            guard = next(g for g in self.output.guards if g.name == verdict.name)
            ask = getattr(guard, "reask_message", None)
            instruction = (
                ask(_outcome_of(verdict))
                if callable(ask)
                else f"Your previous reply failed the {verdict.name} check: {verdict.reason}. Write the reply again so it passes."
            )
            return [*messages, Message.assistant(completion.text), Message.user(instruction)]
        return completion.model_copy(update={"text": call.redactions.restore(report.text)})

    async def _guard_completion(
        self, completion: Completion, messages: Sequence[Message], call: _Call, options: CallOptions | None
    ) -> Completion:
        attempt = 0
        while True:
            if not self.output.guards:
                return completion.model_copy(update={"text": call.redactions.restore(completion.text)})
            try:
                report = await self.output.acheck(
                    completion.text,
                    messages=messages,
                    route=self.route,
                    redactions=call.redactions,
                    documents=_document_texts(),
                )
            except GuardrailError as exc:
                call.record([v for v in exc.verdicts if isinstance(v, Verdict)])
                raise
            judged = self._judge(completion, messages, call, report, attempt)
            if isinstance(judged, Completion):
                return judged
            attempt += 1
            completion = _add_usage(await self.inner.acomplete(judged, options), completion)

    # -- the Model interface -----------------------------------------------------------------------

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """Guard the input, call the model, guard the reply (re-asking when a guard says so).

        CPU-bound guards run in worker threads.
        """
        call = _Call()
        guarded = await self._acheck_input(messages, call)
        if isinstance(guarded, str):
            return _fallback(guarded, self.name)
        return await self._guard_completion(
            await self.inner.acomplete(guarded, options), guarded, call, options
        )

    async def astream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        """Stream through the gate (or, when a guard needs the whole reply to act, buffer it first)."""
        call = _Call()
        guarded = await self._acheck_input(messages, call)
        if isinstance(guarded, str):
            yield StreamChunk(delta=guarded, finish_reason="content_filter")
            return
        if not self.output.windowed:
            chunks = [c async for c in self.inner.astream(guarded, options)]
            done = await self._guard_completion(collect(chunks, model=self.name), guarded, call, options)
            for chunk in completion_to_chunks(done):
                yield chunk
            return
        gate = self._gate(guarded, call)
        try:
            async for chunk in self.inner.astream(guarded, options):
                out = _gate_chunk(gate, chunk)
                if out is not None:
                    yield out
                if gate.fallback is not None:
                    return
            if (last := _last_chunk(gate)) is not None:
                yield last
        finally:
            call.record(merge_verdicts(gate.verdicts))

    def _gate(self, guarded: list[Message], call: _Call) -> StreamGate:
        return StreamGate(
            self.output,
            redactions=call.redactions,
            messages=guarded,
            documents=_document_texts(),
            route=self.route,
        )

    def close(self) -> None:
        """Close the wrapped model."""
        self.inner.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        await self.inner.aclose()


def _last_chunk(gate: StreamGate) -> StreamChunk | None:
    """What the gate still holds when the stream ends (or the fallback it switched to)."""
    if (rest := gate.finish()) or gate.fallback:
        return StreamChunk(delta=rest, finish_reason="content_filter" if gate.fallback else "stop")
    return None


_SKIP = GuardReport(text="")


def _gate_chunk(gate: StreamGate, chunk: StreamChunk) -> StreamChunk | None:
    """Pass one inner chunk through the gate; the last chunk (finish reason) flushes the buffer."""
    if chunk.finish_reason is None:
        released = gate.feed(chunk.delta)
        return (
            StreamChunk(delta=released, tool_calls=chunk.tool_calls) if released or chunk.tool_calls else None
        )
    rest = gate.feed(chunk.delta)
    rest += gate.finish()
    finish = "content_filter" if gate.fallback is not None else chunk.finish_reason
    return StreamChunk(delta=rest, tool_calls=chunk.tool_calls, finish_reason=finish, usage=chunk.usage)


def _outcome_of(verdict: Verdict) -> Any:
    from aiapp.guardrails._verdict import Outcome

    return Outcome(passed=False, reason=verdict.reason, score=verdict.score, details=verdict.details)


_CONTEXT_BLOCK = re.compile(r"(<context>.*?</context>)", re.DOTALL)
_GAP = "\n\n"


_QUESTION = re.compile(r"<question>(.*?)</question>", re.DOTALL)


def _set_aside_context(content: str) -> tuple[str, Callable[[str], str] | None]:
    """The user's own words in a RAG prompt, and how to put a guarded copy back in place.

    The ``<question>`` block when the prompt has one (the template's own wording is not the
    user's), else the text outside ``<context>`` blocks.
    """
    question = _QUESTION.search(content)
    if question is not None:
        start, end = question.span(1)
        return question.group(1), lambda guarded: content[:start] + guarded + content[end:]
    parts = _CONTEXT_BLOCK.split(content)
    if len(parts) == 1:
        return content, None
    own = [p.strip() for p in parts[0::2]]
    blocks = parts[1::2]

    def rebuild(guarded: str) -> str:
        pieces = guarded.split(_GAP) if guarded != _GAP.join(own) else own
        if len(pieces) != len(own):  # a guard rewrote across the gaps: keep its text whole, first
            pieces = [guarded] + [""] * (len(own) - 1)
        out = [pieces[0]]
        for block, piece in zip(blocks, pieces[1:], strict=True):
            out += [block, piece]
        return _GAP.join(p for p in out if p)

    return _GAP.join(p for p in own), rebuild


def _without(message: Message, dropped: Sequence[Document]) -> Message:
    """``message`` with each dropped document's text cut out of its content."""
    content = message.content
    for document in dropped:
        if document.text:
            content = content.replace(document.text, "[document withheld: it failed an input guard]")
    return message if content == message.content else message.model_copy(update={"content": content})


def _fallback(text: str, model: str) -> Completion:
    return Completion(text=text, finish_reason="content_filter", model=model)


def _add_usage(new: Completion, old: Completion) -> Completion:
    """``new`` with the usage of both calls (a re-ask costs twice)."""
    a, b = old.usage, new.usage
    cost = None if a.cost_usd is None or b.cost_usd is None else a.cost_usd + b.cost_usd
    usage = Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cost_usd=cost,
    )
    return new.model_copy(update={"usage": usage})


@register_layer("guards", order=30)
def guard_layer(context: LayerContext, model: Model) -> Model | None:
    """Wrap a route whose config has ``guards:`` (see :mod:`aiapp._guard_config`)."""
    config = context.config.guards if context.config is not None else None
    if config is None or not (config.input or config.output):
        return None
    common = {
        "fallback": config.fallback,
        "max_reasks": config.max_reasks,
        "window_chars": config.window_chars,
    }
    from aiapp.errors import ConfigError

    try:
        inputs = InputGuards(config.input, **common)  # type: ignore[arg-type]
        outputs = OutputGuards(config.output, **common)  # type: ignore[arg-type]
    except ConfigError as exc:
        source = context.settings.source
        raise ConfigError(
            str(exc).removeprefix(f"{exc.field}: ") if exc.field else str(exc),
            path=str(source) if source else None,
            field=f"routes.{context.route}.{exc.field}" if exc.field else f"routes.{context.route}.guards",
        ) from exc
    return GuardedModel(model, input=inputs, output=outputs, route=context.route, retrieved=config.retrieved)
