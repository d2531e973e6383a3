"""The RAG app: the composition chatbots and copilots use.

question → input guards → retrieve → render the prompt with numbered, delimited sources → gateway →
output guards → :class:`~aiapp.apps.Answer` (text, citations, usage, cost, trace id, prompt ref).

The whole request is one trace: an ``app`` span, with the retrieval span and the model call's
``llm`` span nested under it (the gateway picks up the current span by itself).

With ``ask(question, user=...)`` and a prompt given by reference (``"support_answer@production"``)
whose label splits traffic, the user's arm answers (sticky by the user), the label's shadow runs
after the answer is returned, and its canary is watched (see :mod:`aiapp.rollout`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiapp._rollout_config import key_hash
from aiapp.apps._answer import Answer, AnswerStream, Citation, cited_numbers, render_context
from aiapp.errors import InputError
from aiapp.gateway import Document, sync_method, with_documents
from aiapp.prompts import Assignment, Prompt, PromptMessage, PromptRegistry, Variable, parse_ref
from aiapp.rollout import Reservation, Rollout
from aiapp.tracing import SpanRecord
from aiapp.types import CallOptions, Completion, Hit, Message, Retriever, Usage

if TYPE_CHECKING:
    from aiapp.apps._chat import Conversation, Summarizer
    from aiapp.gateway import Gateway

__all__ = ["DEFAULT_PROMPT", "RAGApp", "TextFilter"]

TextFilter = Callable[[str], str]
"""An app-level check on text (``RAGApp(input_guards=..., output_guards=...)``): returns the
(possibly rewritten) text, or raises to block it. Not to be confused with
:class:`aiapp.guardrails.Guard`, the gateway's guard objects."""

DEFAULT_PROMPT = Prompt(
    name="rag_default",
    version=1,
    description="Built-in RAG prompt: answer from the numbered sources only, cite them as [n].",
    params=CallOptions(temperature=0),
    variables={
        "question": Variable(description="The user's question."),
        "context": Variable(description='Numbered sources, each opened by a "[n] path" line.'),
        "no_answer": Variable(default="I could not find an answer to that in the provided context."),
    },
    messages=[
        PromptMessage(
            role="system",
            content=(
                "Answer the question using only the sources inside <context>. Each source starts with "
                'a line "[n] path". Cite the sources you use as [n] after each sentence. If the sources '
                "do not answer the question, reply with exactly: {{ no_answer }}"
            ),
        ),
        PromptMessage(
            role="user",
            content="<context>\n{{ context }}\n</context>\n\n<question>{{ question }}</question>",
        ),
    ],
)
"""The prompt :class:`RAGApp` uses when given none (the shipped ``support_answer`` is a tuned one)."""

_APP_VARIABLES = frozenset({"question", "context"})


@dataclass(frozen=True)
class _Request:
    """One question on its way to the model: the rendered messages and the numbered sources."""

    question: str
    messages: list[Message]
    sources: list[Citation]
    hits: list[Hit]
    started: float
    prompt: Prompt
    variables: dict[str, Any]

    def documents(self) -> list[Document]:
        """The sources as sent in the prompt, for the guards to judge one by one."""
        return [Document(text=s.text, source=s.source, chunk_id=s.chunk_id) for s in self.sources]


class RAGApp:
    """Retrieval-augmented answers over any :class:`~aiapp.types.Retriever`, traced end to end.

    Args:
        gateway: The gateway that calls the model and records traces.
        retriever: Anything with ``search(query, *, k) -> list[Hit]`` (an ``aiapp.retrieval.Index``,
            a test double, a remote search API).
        index: Another name for ``retriever`` (``RAGApp(gateway=gw, index=index)``); give one of them.
        prompt: A :class:`~aiapp.prompts.Prompt`, a reference resolved in the configured prompts
            directory (``"support_answer@production"``), or ``None`` for :data:`DEFAULT_PROMPT`.
            It must declare ``question`` and ``context`` variables.
        k: How many hits to retrieve.
        model: Route (or ``provider/model``); default: the prompt's ``model``, else the default route.
        options: Call options overlaid on the prompt's ``params``.
        variables: Fixed values for the prompt's other variables (a product name, a tone ...).
        input_guards: Callables applied to the question before retrieval, in order.
        output_guards: Callables applied to the reply text, in order. When set, :meth:`stream`
            buffers the reply so unguarded text is never shown.
        max_context_chars: Most characters of sources put into the prompt.
        name: The app's name in traces.

    Raises:
        InputError: neither or both of ``retriever`` and ``index``, or a bad ``k``.
        PromptError: the prompt cannot serve a RAG app (variables, output type).

    Example:
        >>> app = RAGApp(gateway=gw, index=aiapp.Index.open("ollama"), prompt="support_answer")
        >>> answer = app.ask("How do I make the server listen on all interfaces?")
        >>> answer.text, [c.source for c in answer.citations], answer.trace_id
    """

    def __init__(
        self,
        *,
        gateway: Gateway,
        retriever: Retriever | None = None,
        index: Retriever | None = None,
        prompt: Prompt | str | None = None,
        k: int = 5,
        model: str | None = None,
        options: CallOptions | None = None,
        variables: Mapping[str, Any] | None = None,
        input_guards: TextFilter | Sequence[TextFilter] = (),
        output_guards: TextFilter | Sequence[TextFilter] = (),
        max_context_chars: int = 12_000,
        name: str = "rag",
    ) -> None:
        source = retriever if retriever is not None else index
        if source is None or (retriever is not None and index is not None):
            raise InputError("RAGApp needs exactly one of retriever= or index=")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(f"k must be a positive integer, got {k!r}")
        self.gateway = gateway
        self.retriever: Retriever = source
        self._ref: str | None = None
        self._rollout: Rollout | None = None
        if isinstance(prompt, str):
            registry = PromptRegistry.from_settings(gateway.settings)
            self._ref, self._registry = prompt, registry
            prompt = registry.get(prompt)
        self.prompt = prompt if prompt is not None else DEFAULT_PROMPT
        self.k = k
        self.model = model
        self.options = options
        self.variables = dict(variables or {})
        self.input_guards = _guards(input_guards)
        self.output_guards = _guards(output_guards)
        self.max_context_chars = max_context_chars
        self.name = name
        self._check_prompt()

    @property
    def route(self) -> str:
        """The route this app calls."""
        return self.model or self.prompt.model or self.gateway.settings.default_route

    # -- asking --------------------------------------------------------------------------------

    async def aask(
        self, question: str, *, history: Sequence[Message] = (), user: str | None = None
    ) -> Answer:
        """Answer ``question`` from retrieved sources (sync: :meth:`ask`).

        Retrieval runs in a worker thread, the model call is async.

        Args:
            question: The user's question.
            history: Earlier conversation turns, inserted before the question (see
                :class:`~aiapp.apps.Conversation`).
            user: The user's id (or a session id): under a label that splits traffic, the
                user's arm answers (the same user, the same arm), recorded on the trace.

        Raises:
            InputError: an empty question.
            ProviderError: the model call failed. Guards' exceptions propagate unchanged.
        """
        assignment = self._assign(user)
        prompt = assignment.prompt if assignment is not None else self.prompt
        with self._span(question, prompt) as span:
            request = await asyncio.to_thread(
                self._prepare, question, history, prompt
            )  # copies the span context
            extra, reservation = self._begin(assignment, user, span)
            try:
                with with_documents(request.documents()):
                    completion = await self.gateway.acomplete(
                        request.messages, **self._call_args(prompt, extra)
                    )
            except BaseException:  # cancelled too: a reserved shadow slot is given back
                self._end(assignment, reservation, request, None)
                raise
            self._end(assignment, reservation, request, completion.trace_id)
            return self._finish(request, completion, span)

    ask = sync_method(aask)

    def stream(
        self, question: str, *, history: Sequence[Message] = (), user: str | None = None
    ) -> AnswerStream:
        """Answer ``question``, yielding text as it arrives (``for`` or ``async for``).

        ``stream.answer`` is set at the end. With output guards the reply is buffered, guarded,
        then yielded at once. ``user`` picks the user's arm as in :meth:`aask`.
        """

        async def run(sink: AnswerStream) -> AsyncIterator[str]:
            assignment = self._assign(user)
            prompt = assignment.prompt if assignment is not None else self.prompt
            with self._span(question, prompt) as span:
                request = await asyncio.to_thread(self._prepare, question, history, prompt)
                parts: list[str] = []
                usage: Usage | None = None
                extra, reservation = self._begin(assignment, user, span)
                ended = False
                try:
                    with with_documents(request.documents()):
                        async for chunk in self.gateway.astream(
                            request.messages, **self._call_args(prompt, extra)
                        ):
                            parts.append(chunk.delta)
                            usage = chunk.usage or usage
                            if not self.output_guards and chunk.delta:
                                yield chunk.delta
                    ended = True
                finally:
                    self._end(assignment, reservation, request, span.trace_id if ended else None)
                text = "".join(parts)
                if self.output_guards:
                    text = await asyncio.to_thread(_apply, self.output_guards, text)
                    yield text
                sink.answer = self._answer(request, text, usage or Usage(), span, None)

        return AnswerStream(run)

    def conversation(self, *, window: int = 6, summarize: Summarizer | None = None) -> Conversation:
        """A chat over this app: keeps the last ``window`` turns; older ones go to ``summarize``."""
        from aiapp.apps._chat import Conversation

        return Conversation(self, window=window, summarize=summarize)

    def feedback(self, trace_id: str, score: float, comment: str | None = None) -> None:
        """Store a user's score (e.g. ``+1``/``-1``) and comment with an answer's trace."""
        self.gateway.feedback(trace_id, score, comment)

    def retrieve(self, query: str) -> list[Hit]:
        """Search the retriever in a ``retrieval`` span (nested under the current span, if any)."""
        tracer = self.gateway.tracer
        name = getattr(self.retriever, "name", None)
        name = name if isinstance(name, str) and name else type(self.retriever).__name__
        with tracer.span("retrieval", name, input=query) as span:
            hits = list(self.retriever.search(query, k=self.k))
            span.attributes.update(
                k=self.k,
                corpus_version=next((h.corpus_version for h in hits if h.corpus_version), None),
                hits=[{"source": h.source, "chunk_id": h.chunk_id, "score": h.score} for h in hits],
            )
            span.output = "\n".join(f"[{i}] {h.source} ({h.score:.3f})" for i, h in enumerate(hits, 1))
        return hits

    # -- internals -----------------------------------------------------------------------------

    def _check_prompt(self, prompt: Prompt | None = None) -> None:
        prompt = prompt or self.prompt
        missing = sorted(_APP_VARIABLES - set(prompt.variables))
        if missing:
            raise prompt.error(
                f"{prompt.ref} cannot serve a RAG app: it must declare the variable(s) {', '.join(missing)}"
            )
        unfilled = [
            name
            for name, spec in prompt.variables.items()
            if spec.is_required and name not in _APP_VARIABLES and name not in self.variables
        ]
        if unfilled:
            raise prompt.error(
                f"{prompt.ref} needs variable(s) {', '.join(unfilled)}: pass them as RAGApp(variables=...)"
            )
        if prompt.output.type != "text":
            raise prompt.error(f"{prompt.ref} declares JSON output; a RAG app needs a text prompt")

    def _assign(self, user: str | None) -> Assignment | None:
        """The user's arm when the prompt's label splits traffic (``None``: serve :attr:`prompt`)."""
        if user is None or self._ref is None:
            return None
        parsed = parse_ref(self._ref)
        if parsed.version is not None:
            return None
        label = parsed.label or "production"
        entry = self._registry.entry(parsed.name, label)
        if entry is None or not entry.is_split:
            return None
        if self._rollout is None:
            self._rollout = Rollout(self.gateway, self._registry, label=label)
        assignment = self._rollout.assign(parsed.name, label=label, key=user)
        if assignment.prompt is not self.prompt:
            self._check_prompt(assignment.prompt)
        return assignment

    def _begin(
        self, assignment: Assignment | None, user: str | None, span: SpanRecord
    ) -> tuple[dict[str, Any], Reservation | None]:
        # A weighted route is sticky by the same user (hashed: traces keep no raw user id).
        sticky = {"rollout_key": key_hash(user)} if user is not None else {}
        if assignment is None or self._rollout is None:
            return sticky, None
        attributes, reservation = self._rollout.begin(assignment, user)
        span.attributes.update(attributes)
        return {**sticky, **attributes}, reservation

    def _end(
        self,
        assignment: Assignment | None,
        reservation: Reservation | None,
        request: _Request,
        trace_id: str | None,
    ) -> None:
        if assignment is None or self._rollout is None:
            return
        self._rollout.finish(
            assignment,
            reservation,
            request.variables,
            route=self._route(assignment.prompt),
            trace_id=trace_id,
            failed=trace_id is None,
            options=self.options,
        )

    def _prepare(self, question: str, history: Sequence[Message], prompt: Prompt | None = None) -> _Request:
        prompt = prompt or self.prompt
        started = time.perf_counter()
        if not question.strip():
            raise InputError("the question is empty")
        guarded = _apply(self.input_guards, question)
        hits = self.retrieve(guarded)
        context, sources = render_context(hits, max_chars=self.max_context_chars)
        variables = {**self.variables, "question": guarded, "context": context}
        rendered = prompt.render(variables)
        if history:
            rendered = [*rendered[:-1], *history, rendered[-1]]
        # sources keep hit order
        return _Request(question, rendered, sources, hits[: len(sources)], started, prompt, variables)

    def _route(self, prompt: Prompt) -> str:
        return self.model or prompt.model or self.gateway.settings.default_route

    def _span(self, question: str, prompt: Prompt | None = None) -> AbstractContextManager[SpanRecord]:
        prompt = prompt or self.prompt
        return self.gateway.tracer.span(
            "app",
            self.name,
            route=self._route(prompt),
            prompt_ref=prompt.ref,
            prompt_hash=prompt.content_hash,
            input=question,
        )

    def _call_args(
        self, prompt: Prompt | None = None, extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The gateway arguments every answer's model call shares."""
        prompt = prompt or self.prompt
        return {
            "model": self._route(prompt),
            "options": prompt.call_options(self.options),
            "prompt_ref": prompt.prompt_ref(),
            "metadata": {"app": self.name, **(extra or {})},
        }

    def _finish(self, request: _Request, completion: Completion, span: SpanRecord) -> Answer:
        """The answer from a finished (non-streamed) completion, after the output guards."""
        text = _apply(self.output_guards, completion.text)
        return self._answer(
            request, text, completion.usage, span, completion.deployment or completion.model or None
        )

    def _answer(
        self, request: _Request, text: str, usage: Usage, span: SpanRecord, model: str | None
    ) -> Answer:
        sources = request.sources
        by_number = {s.n: s for s in sources}
        citations = [by_number[n] for n in cited_numbers(text) if n in by_number]
        answer = Answer(
            question=request.question,
            text=text,
            citations=citations,
            sources=sources,
            hits=request.hits,
            usage=usage,
            latency_ms=(time.perf_counter() - request.started) * 1000.0,
            trace_id=span.trace_id,
            prompt=request.prompt.ref,
            prompt_hash=request.prompt.content_hash,
            route=self._route(request.prompt),
            model=model,
        )
        span.model = model
        span.output = text
        span.input_tokens = usage.input_tokens
        span.output_tokens = usage.output_tokens
        span.cost_usd = usage.cost_usd
        span.attributes.update(
            citations=[{"n": c.n, "source": c.source, "chunk_id": c.chunk_id} for c in citations],
            sources=len(sources),
        )
        return answer


def _guards(guards: TextFilter | Sequence[TextFilter]) -> tuple[TextFilter, ...]:
    if callable(guards):
        return (guards,)
    return tuple(guards)


def _apply(guards: Sequence[TextFilter], text: str) -> str:
    for guard in guards:
        text = guard(text)
    return text
