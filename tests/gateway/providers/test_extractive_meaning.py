"""``local/extractive`` choosing sentences by meaning: the README's headline question, no repeats."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from aiapp.gateway.providers._extractive import MeaningScorer, choose, is_concrete
from aiapp.gateway.providers.local import ExtractiveModel

# What retrieval returns for the headline question (corpora/ollama/docs/faq.mdx, trimmed).
HEADLINE_CONTEXT = """\
[1] corpora/ollama/docs/faq.mdx
# How can I use Ollama with a proxy server?

Ollama runs an HTTP server and can be exposed using a proxy server such as Nginx. For example, with Nginx:

```nginx
server {
    listen 80;
    server_name example.com;
}
```

[2] corpora/ollama/docs/faq.mdx
# How can I expose Ollama on my network?

Ollama binds 127.0.0.1 port 11434 by default. Change the bind address with the `OLLAMA_HOST` environment variable.

[3] corpora/ollama/docs/capabilities/web-search.mdx
`Manage MCP Servers` > `Configure MCP Servers` > Add the following configuration:

[4] corpora/ollama/docs/faq.mdx
# How can I expose Ollama on my network?

Ollama binds 127.0.0.1 port 11434 by default. Change the bind address with the `OLLAMA_HOST` environment variable.
"""
HEADLINE = "How do I make the server listen on all interfaces?"


@pytest.fixture(scope="module")
def model() -> ExtractiveModel:
    pytest.importorskip("onnxruntime", reason="meaning needs the retrieval extra")
    return ExtractiveModel()


def test_headline_question_is_answered_with_ollama_host(model: ExtractiveModel) -> None:
    answer = model.extract(HEADLINE, HEADLINE_CONTEXT)
    assert answer.supported and "OLLAMA_HOST" in answer.text, answer.text
    assert "listen 80" not in answer.text and "Nginx" not in answer.text
    assert answer.text.count("Change the bind address") == 1  # the same sentence in [2] and [4]: once
    assert 2 in answer.sources  # cited where it was first found


def test_words_alone_still_pick_the_proxy_line() -> None:
    lexical = ExtractiveModel(semantic=False).extract(HEADLINE, HEADLINE_CONTEXT)
    assert "OLLAMA_HOST" not in lexical.text  # what the baseline answered before meaning was added


def test_meaning_does_not_answer_what_the_context_cannot(model: ExtractiveModel) -> None:
    answer = model.extract("What is the capital of France?", HEADLINE_CONTEXT)
    assert not answer.supported


def test_concrete_things() -> None:
    assert is_concrete("Set `OLLAMA_HOST` first.") and is_concrete("Use OLLAMA_KEEP_ALIVE to keep it")
    assert is_concrete("Run it with --verbose.") and is_concrete("It binds 0.0.0.0:11434.")
    assert is_concrete("Allow 8 GB of memory.")
    assert not is_concrete("Ollama runs an HTTP server and can be exposed using a proxy.")


@dataclass(frozen=True)
class S:
    text: str
    source: int | None = 1
    candidate: bool = True
    code: bool = False
    heading: str = ""


def test_choose_never_repeats_and_prefers_the_concrete_sentence() -> None:
    sentences = [
        S("You can change where the server listens."),
        S("Set `OLLAMA_HOST=0.0.0.0` to listen everywhere."),
        S("Set `OLLAMA_HOST=0.0.0.0` to listen everywhere.", source=2),
        S("Bananas are yellow."),
    ]
    picked = choose(sentences, [1.0, 1.0, 1.0, 0.0], [0.5, 0.5, 0.5, 0.0], [0.6, 0.6, 0.6, 0.0], 3)
    assert picked[0] == 0 or 1 in picked
    assert not {1, 2} <= set(picked)  # one copy only
    assert 3 not in picked


def test_meaning_scorer_embeds_each_distinct_text_once() -> None:
    import numpy as np

    calls: list[list[str]] = []

    class Counting:
        def embed(self, texts: list[str]) -> np.ndarray:
            calls.append(list(texts))
            return np.tile(np.eye(1, 4, dtype=np.float32), (len(texts), 1))

    scorer = MeaningScorer(Counting())
    sentences = [S("same"), S("same"), S("other"), S("code();", code=True)]
    first = scorer("q", sentences)
    assert first is not None and first[3] == 0.0
    assert calls == [["q", "same", "other"]]
    scorer("q", sentences)
    assert len(calls) == 1  # remembered
    assert MeaningScorer(Counting(), enabled=False)("q", sentences) is None
