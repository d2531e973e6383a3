"""Apps: compositions of retrieval, prompts and the gateway that chatbots and copilots use.

- :class:`RAGApp` — question → input guards → retrieve → prompt with numbered, delimited sources →
  gateway → output guards → :class:`Answer` (text, citations, usage, cost, trace id, prompt ref);
  :meth:`RAGApp.stream`, :meth:`RAGApp.feedback`, :meth:`RAGApp.conversation`.
- :class:`Conversation` — chat memory: a window of recent turns plus a summary hook.

Works with any :class:`aiapp.types.Retriever` (``search(query, *, k) -> list[Hit]``)::

    app = aiapp.RAGApp(gateway=gw, index=aiapp.Index.open("ollama"), prompt="support_answer")
    answer = app.ask("How do I make the server listen on all interfaces?")
"""

from aiapp.apps._answer import Answer, AnswerStream, Citation, cited_numbers, render_context, strip_citations
from aiapp.apps._chat import Conversation, Summarizer
from aiapp.apps._rag import DEFAULT_PROMPT, RAGApp, TextFilter

__all__ = [
    "DEFAULT_PROMPT",
    "Answer",
    "AnswerStream",
    "Citation",
    "Conversation",
    "RAGApp",
    "Summarizer",
    "TextFilter",
    "cited_numbers",
    "render_context",
    "strip_citations",
]
