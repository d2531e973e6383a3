"""The ``local/extractive`` baseline: sentence selection, citations, abstention, JSON, streaming, usage."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from aiapp.errors import InputError
from aiapp.gateway._model import collect
from aiapp.gateway.providers.local import (
    MODEL_NAME,
    NO_ANSWER,
    NO_CONTEXT,
    ExtractiveModel,
    count_tokens,
)
from aiapp.types import CallOptions, Message, ResponseFormat, ToolSpec

OLLAMA_CONTEXT = """\
[1] docs/faq.md
## How do I configure Ollama server?
Ollama server can be configured with environment variables. By default Ollama binds 127.0.0.1 port 11434.
To listen on all interfaces, set `OLLAMA_HOST=0.0.0.0` before starting the server.

[2] (source: docs/gpu.md)
Ollama supports Nvidia GPUs with compute capability 5.0 and higher, e.g. the RTX 4090.
AMD GPUs are supported through ROCm on Linux and Windows.

[3] docs/linux.md
On Linux, Ollama runs as a systemd service. Logs are read with journalctl -u ollama.
"""

PLAIN_CONTEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the company of "
    "Gustave Eiffel. Construction finished in 1889, for the World's Fair. The tower is 330 metres tall. "
    "It is the most visited paid monument in the world."
)


def ask(question: str, context: str | None, **options: Any) -> str:
    messages = [
        Message.user(question if context is None else f"<context>\n{context}\n</context>\n{question}")
    ]
    return ExtractiveModel().complete(messages, CallOptions(**options)).text


def test_numbered_sources_return_the_sentence_with_its_marker() -> None:
    text = ask("Which GPUs from AMD are supported?", OLLAMA_CONTEXT, extra={"max_sentences": 1})
    assert text == "AMD GPUs are supported through ROCm on Linux and Windows. [2]"
    longer = ask("Which GPUs from AMD are supported?", OLLAMA_CONTEXT)
    assert "AMD GPUs are supported through ROCm" in longer
    assert longer.endswith("[2]") and "[1]" not in longer and "[3]" not in longer


def test_ollama_listen_on_all_interfaces_selects_the_ollama_host_sentence() -> None:
    model = ExtractiveModel()
    messages = [
        Message.system(f"Answer from the context.\n<context>\n{OLLAMA_CONTEXT}</context>"),
        Message.user("How do I make the server listen on all interfaces?"),
    ]
    answer = model.complete(messages)
    assert "OLLAMA_HOST=0.0.0.0" in answer.text
    assert answer.text.split(" [1]")[0].endswith("before starting the server.")
    assert model.extract("How do I make the server listen on all interfaces?", OLLAMA_CONTEXT).sources == (1,)


def test_fenced_code_line_is_kept_after_the_sentence_that_introduces_it() -> None:
    context = (
        "## Exposing Ollama on your network\n\nTo listen on all interfaces, set the variable:\n\n"
        "```shell\nOLLAMA_HOST=0.0.0.0 ollama serve\n```\n\nThe default port is 11434."
    )
    text = ask("How do I make Ollama listen on all interfaces?", context, extra={"max_sentences": 2})
    assert text == "To listen on all interfaces, set the variable: OLLAMA_HOST=0.0.0.0 ollama serve"


def test_plain_context_answers_without_markers() -> None:
    text = ask("When was the Eiffel Tower construction finished?", PLAIN_CONTEXT, extra={"max_sentences": 1})
    assert text == "Construction finished in 1889, for the World's Fair."


def test_abbreviations_and_decimals_do_not_split_sentences() -> None:
    model = ExtractiveModel(max_sentences=1)
    answer = model.extract("Which Nvidia GPUs does Ollama support?", OLLAMA_CONTEXT)
    assert answer.sentences == (
        "Ollama supports Nvidia GPUs with compute capability 5.0 and higher, e.g. the RTX 4090.",
    )


def test_unrelated_question_says_no_answer() -> None:
    assert ask("What is the capital of Australia?", OLLAMA_CONTEXT) == NO_ANSWER
    assert ask("Who painted the Mona Lisa?", PLAIN_CONTEXT) == NO_ANSWER


@pytest.mark.parametrize("context", [None, "", "   \n  "])
def test_no_context_says_so(context: str | None) -> None:
    assert ask("How do I make the server listen on all interfaces?", context) == NO_CONTEXT


def test_question_tag_and_question_label_narrow_the_question() -> None:
    prompt = (
        "You are a support bot. Always cite sources and be concise about Paris monuments.\n"
        f"<context>{PLAIN_CONTEXT}</context>\n"
    )
    model = ExtractiveModel(max_sentences=1)
    tagged = model.complete([Message.user(prompt + "<question>How tall is the tower?</question>")])
    labelled = model.complete([Message.user(prompt + "Question: How tall is the tower?\nAnswer:")])
    assert tagged.text == labelled.text == "The tower is 330 metres tall."


def test_json_mode_parses() -> None:
    model = ExtractiveModel()
    question = [Message.user(f"<context>{OLLAMA_CONTEXT}</context>\nWhich AMD GPUs are supported?")]
    for fmt in (ResponseFormat(type="json_object"), ResponseFormat(type="json_schema", json_schema={})):
        data = model.complete(question, CallOptions(response_format=fmt)).json_data()
        assert data["supported"] is True
        assert data["sources"] == [2]
        assert "ROCm" in data["answer"]
    unsupported = model.complete(
        [Message.user(f"<context>{OLLAMA_CONTEXT}</context>\nWho won the 1998 World Cup?")],
        CallOptions(response_format=ResponseFormat(type="json_object")),
    ).json_data()
    assert unsupported == {"answer": NO_ANSWER, "sources": [], "supported": False}


def test_stream_assembles_to_the_same_text_as_complete() -> None:
    model = ExtractiveModel()
    messages = [Message.user(f"<context>{OLLAMA_CONTEXT}</context>\nHow do I listen on all interfaces?")]
    complete = model.complete(messages)
    chunks = list(model.stream(messages))
    assert len(chunks) > 3
    assert all(a.delta != b.delta for a, b in itertools.pairwise(chunks))
    streamed = collect(chunks, model=MODEL_NAME)
    assert streamed.text == complete.text
    assert streamed.usage == complete.usage
    assert chunks[-1].finish_reason == "stop"


async def test_async_complete_and_stream() -> None:
    model = ExtractiveModel()
    messages = [Message.user(f"<context>{PLAIN_CONTEXT}</context>\nHow tall is the Eiffel Tower?")]
    answer = await model.acomplete(messages)
    assert "330 metres" in answer.text
    streamed = "".join([chunk.delta async for chunk in model.astream(messages)])
    assert streamed == answer.text


def test_usage_and_metadata() -> None:
    messages = [
        Message.system(f"<context>{PLAIN_CONTEXT}</context>"),
        Message.user("How tall is the tower?"),
    ]
    answer = ExtractiveModel().complete(messages)
    assert answer.model == MODEL_NAME
    assert answer.finish_reason == "stop"
    assert answer.usage.cost_usd == 0.0
    assert answer.usage.input_tokens == sum(count_tokens(m.content) for m in messages) > 50
    assert answer.usage.output_tokens == count_tokens(answer.text) > 0
    assert answer.latency_ms > 0
    assert count_tokens("Hello, world!") == 4


def test_max_sentences_is_respected() -> None:
    question = "What is the Eiffel Tower and who designed the tower in Paris?"
    default = ExtractiveModel().extract(question, PLAIN_CONTEXT)
    assert 1 < len(default.sentences) <= 3
    assert len(ExtractiveModel(max_sentences=1).extract(question, PLAIN_CONTEXT).sentences) == 1
    per_call = ask(question, PLAIN_CONTEXT, extra={"max_sentences": 1})
    assert per_call == ExtractiveModel(max_sentences=1).extract(question, PLAIN_CONTEXT).text
    # sentences come back in context order, not score order
    positions = [PLAIN_CONTEXT.index(s) for s in default.sentences]
    assert positions == sorted(positions)


@pytest.mark.parametrize("bad", [0, -1, "3", 2.5, True])
def test_bad_max_sentences_is_a_clear_error(bad: object) -> None:
    with pytest.raises(InputError, match="max_sentences"):
        ask("How tall is the tower?", PLAIN_CONTEXT, extra={"max_sentences": bad})
    with pytest.raises(InputError, match="max_sentences"):
        ExtractiveModel(max_sentences=bad)  # type: ignore[arg-type]


def test_deterministic() -> None:
    messages = [Message.user(f"<context>{OLLAMA_CONTEXT}</context>\nHow is Ollama configured on Linux?")]
    texts = {ExtractiveModel().complete(messages).text for _ in range(5)}
    assert len(texts) == 1


def test_tools_are_ignored_and_info_says_so() -> None:
    model = ExtractiveModel()
    assert model.info.supports_tools is False and model.info.supports_json and model.info.supports_streaming
    tools = (ToolSpec(name="search", description="search the docs"),)
    answer = model.complete(
        [Message.user(f"<context>{PLAIN_CONTEXT}</context>\nHow tall is the tower?")],
        CallOptions(tools=tools),
    )
    assert answer.tool_calls == ()
    assert "330 metres" in answer.text


def test_context_blocks_are_concatenated_and_consecutive_markers_deduped() -> None:
    messages = [
        Message.system("<context>[1] a.md\nThe tower is 330 metres tall.</context>"),
        Message.user(
            "<context>[2] b.md\nThe tower was painted brown in 1968.</context>\nHow tall is the tower?"
        ),
    ]
    assert ExtractiveModel(max_sentences=1).complete(messages).text == "The tower is 330 metres tall. [1]"
    same_source = "[4] notes.md\nThe tower is tall. The tower is 330 metres tall. The tower is in Paris."
    text = ExtractiveModel().extract("How tall is the tower?", same_source).text
    assert text.count("[4]") == 1 and text.endswith("[4]")


def test_max_context_chars_reads_only_the_start() -> None:
    context = "The tower is 330 metres tall. " + "Filler words about nothing much. " * 50
    later = context + "The secret code word is pineapple."
    model = ExtractiveModel(max_context_chars=len(context))
    assert model.extract("What is the secret code word?", later).text == NO_ANSWER
    assert "pineapple" in ExtractiveModel().extract("What is the secret code word?", later).text


def test_stop_and_max_tokens_cut_plain_text() -> None:
    messages = [Message.user(f"<context>{PLAIN_CONTEXT}</context>\nHow tall is the tower?")]
    model = ExtractiveModel(max_sentences=1)
    assert model.complete(messages, CallOptions(stop=("330",))).text == "The tower is "
    cut = model.complete(messages, CallOptions(max_tokens=3))
    assert (cut.text, cut.finish_reason) == ("The tower is", "length")


def test_a_few_kb_of_context_is_fast() -> None:
    context = OLLAMA_CONTEXT + "\n[4] eiffel.md\n" + "\n\n".join([PLAIN_CONTEXT] * 14)
    assert 3000 < len(context) < 6000
    model = ExtractiveModel()
    model.extract("How tall is the tower?", context)  # warm the stem cache
    answer = model.complete([Message.user(f"<context>{context}</context>\nHow tall is the tower?")])
    assert answer.latency_ms < 50  # ~2 ms typical; generous for slow CI machines
    assert json.dumps(answer.text)
