"""The RAG app: the composition chatbots and copilots use.

question → input guards → retrieve → render the prompt with numbered, delimited sources → gateway →
output guards → :class:`~aiapp.apps.Answer` (text, citations, usage, cost, trace id, prompt ref).

The whole request is one trace: an ``app`` span, with the retrieval span and the model call's
``llm`` span nested under it (the gateway picks up the current span by itself).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiapp.apps._answer import Answer, AnswerStream, Citation, cited_numbers, render_context
from aiapp.errors import InputError
from aiapp.gateway import Document, sync_method, with_documents
from aiapp.prompts import Prompt, PromptMessage, PromptRegistry, Variable
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
        if isinstance(prompt, str):
            prompt = PromptRegistry.from_settings(gateway.settings).get(prompt)
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

    async def aask(self, question: str, *, history: Sequence[Message] = ()) -> Answer:
        """Answer ``question`` from retrieved sources (sync: :meth:`ask`).

        Retrieval runs in a worker thread, the model call is async.

        Args:
            question: The user's question.
            history: Earlier conversation turns, inserted before the question (see
                :class:`~aiapp.apps.Conversation`).

        Raises:
            InputError: an empty question.
            ProviderError: the model call failed. Guards' exceptions propagate unchanged.
        """
        with self._span(question) as span:
            request = await asyncio.to_thread(self._prepare, question, history)  # copies the span context
            with with_documents(request.documents()):
                completion = await self.gateway.acomplete(request.messages, **self._call_args())
            return self._finish(request, completion, span)

    ask = sync_method(aask)

    def stream(self, question: str, *, history: Sequence[Message] = ()) -> AnswerStream:
        """Answer ``question``, yielding text as it arrives (``for`` or ``async for``).

        ``stream.answer`` is set at the end. With output guards the reply is buffered, guarded,
        then yielded at once.
        """

        async def run(sink: AnswerStream) -> AsyncIterator[str]:
            with self._span(question) as span:
                request = await asyncio.to_thread(self._prepare, question, history)
                parts: list[str] = []
                usage: Usage | None = None
                with with_documents(request.documents()):
                    async for chunk in self.gateway.astream(request.messages, **self._call_args()):
                        parts.append(chunk.delta)
                        usage = chunk.usage or usage
                        if not self.output_guards and chunk.delta:
                            yield chunk.delta
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

    def _check_prompt(self) -> None:
        prompt = self.prompt
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

    def _prepare(self, question: str, history: Sequence[Message]) -> _Request:
        started = time.perf_counter()
        if not question.strip():
            raise InputError("the question is empty")
        guarded = _apply(self.input_guards, question)
        hits = self.retrieve(guarded)
        context, sources = render_context(hits, max_chars=self.max_context_chars)
        rendered = self.prompt.render({**self.variables, "question": guarded, "context": context})
        if history:
            rendered = [*rendered[:-1], *history, rendered[-1]]
        return _Request(question, rendered, sources, hits[: len(sources)], started)  # sources keep hit order

    def _span(self, question: str) -> AbstractContextManager[SpanRecord]:
        return self.gateway.tracer.span(
            "app",
            self.name,
            route=self.route,
            prompt_ref=self.prompt.ref,
            prompt_hash=self.prompt.content_hash,
            input=question,
        )

    def _call_args(self) -> dict[str, Any]:
        """The gateway arguments every answer's model call shares."""
        return {
            "model": self.route,
            "options": self.prompt.call_options(self.options),
            "prompt_ref": self.prompt.prompt_ref(),
            "metadata": {"app": self.name},
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
            prompt=self.prompt.ref,
            prompt_hash=self.prompt.content_hash,
            route=self.route,
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
