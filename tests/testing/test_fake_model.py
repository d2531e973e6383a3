"""FakeModel: a scripted model users queue replies on and assert calls against."""

from __future__ import annotations

import asyncio
import threading

import pytest

from aiapp.gateway._model import Model, ModelInfo, collect
from aiapp.testing import FakeCall, FakeModel
from aiapp.types import CallOptions, Completion, Message, ToolCall, Usage

HI = [Message.user("hi there")]


def test_is_a_model_and_replies_in_queue_order() -> None:
    fake = FakeModel(["first reply", "second"])
    assert isinstance(fake, Model)
    assert fake.complete(HI).text == "first reply"
    second = fake.complete(HI)
    assert second.text == "second"
    assert second.finish_reason == "stop"
    assert second.model == "fake/model"
    assert fake.pending == 0


def test_usage_counts_whitespace_words_and_costs_nothing() -> None:
    fake = FakeModel(["one two three"])
    completion = fake.complete([Message.system("be brief"), Message.user("what is up")])
    assert completion.usage == Usage(input_tokens=5, output_tokens=3, cost_usd=0.0)


def test_tool_call_list_becomes_a_tool_call_reply() -> None:
    calls = [ToolCall(id="c1", name="search", arguments='{"q": "kittens"}')]
    fake = FakeModel([calls, (ToolCall(id="c2", name="noop"),)])
    first = fake.complete(HI)
    assert first.finish_reason == "tool_calls"
    assert first.tool_calls == tuple(calls)
    assert first.text == ""
    assert first.tool_calls[0].parsed_arguments() == {"q": "kittens"}
    assert fake.complete(HI).tool_calls[0].name == "noop"


def test_completion_and_message_responses() -> None:
    given = Completion(text="exact", finish_reason="length", usage=Usage(input_tokens=7, output_tokens=1))
    fake = FakeModel([given, Message.assistant("from a message")], name="fake/other")
    out = fake.complete(HI)
    assert (out.text, out.finish_reason, out.usage.input_tokens) == ("exact", "length", 7)
    assert out.model == "fake/other"  # filled in when the completion has none
    assert fake.complete(HI).text == "from a message"


def test_exceptions_are_raised_and_still_consume_and_record() -> None:
    boom = ValueError("provider exploded")
    fake = FakeModel([boom, TimeoutError, "after"])
    with pytest.raises(ValueError, match="provider exploded") as info:
        fake.complete(HI)
    assert info.value is boom
    with pytest.raises(TimeoutError):
        fake.complete(HI)
    assert fake.complete(HI).text == "after"
    assert fake.call_count == 3


def test_callable_response_sees_messages_and_options() -> None:
    def echo(messages: list[Message], options: CallOptions) -> str:
        return f"{messages[-1].content} @ {options.temperature}"

    fake = FakeModel([echo, lambda m, o: [ToolCall(id="t", name="lookup")], lambda m, o: KeyError("k")])
    assert fake.complete(HI, CallOptions(temperature=0.5)).text == "hi there @ 0.5"
    assert fake.complete(HI).finish_reason == "tool_calls"
    with pytest.raises(KeyError):
        fake.complete(HI)


def test_default_is_used_when_the_queue_is_empty() -> None:
    fake = FakeModel(["queued"], default=lambda m, o: "default for " + m[-1].content)
    assert fake.complete(HI).text == "queued"
    assert fake.complete([Message.user("a")]).text == "default for a"
    assert fake.complete([Message.user("b")]).text == "default for b"


def test_empty_queue_raises_a_clear_error() -> None:
    fake = FakeModel(["only one"])
    fake.complete(HI)
    with pytest.raises(
        RuntimeError, match=r"FakeModel 'fake/model' has no queued response left \(2 calls made\)"
    ):
        fake.complete(HI)


def test_push_appends_and_chains() -> None:
    fake = FakeModel().push("a").push("b", "c")
    assert [fake.complete(HI).text for _ in range(3)] == ["a", "b", "c"]


def test_bad_responses_raise_type_error() -> None:
    fake = FakeModel([[], ["not a tool call"], 42])  # type: ignore[list-item]
    for _ in range(3):
        with pytest.raises(TypeError, match="FakeModel 'fake/model'"):
            fake.complete(HI)


def test_calls_are_recorded_with_normalised_options() -> None:
    fake = FakeModel(default="ok")
    options = CallOptions(max_tokens=5)
    fake.complete([Message.system("sys"), Message.user("question one")], options)
    fake.complete(HI)
    assert fake.calls[0] == FakeCall(
        messages=[Message.system("sys"), Message.user("question one")], options=options
    )
    assert fake.calls[0].last_user_text == "question one"
    assert fake.calls[1].options == CallOptions()
    assert fake.last_messages == HI
    fake.reset()
    assert fake.calls == []
    with pytest.raises(RuntimeError, match="has not been called"):
        _ = fake.last_messages


def test_info_and_name_are_configurable() -> None:
    fake = FakeModel(name="fake/no-tools", info=ModelInfo(supports_tools=False))
    assert fake.info.supports_tools is False
    assert repr(fake) == "<FakeModel fake/no-tools>"


async def test_acomplete_consumes_the_same_queue() -> None:
    fake = FakeModel(["async one", "sync two"])
    assert (await fake.acomplete(HI)).text == "async one"
    assert fake.complete(HI).text == "sync two"


def test_stream_yields_words_and_a_final_chunk_with_usage() -> None:
    fake = FakeModel(["the quick brown fox"])
    chunks = list(fake.stream(HI))
    assert [c.delta for c in chunks] == ["the ", "quick ", "brown ", "fox"]
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage == Usage(input_tokens=2, output_tokens=4, cost_usd=0.0)
    assert collect(iter(chunks)).text == "the quick brown fox"


def test_stream_tool_calls_arrive_on_the_last_chunk() -> None:
    calls = [ToolCall(id="c1", name="search", arguments='{"q": "x"}')]
    chunks = list(FakeModel([calls]).stream(HI))
    assert chunks[-1].tool_calls == tuple(calls)
    assert chunks[-1].finish_reason == "tool_calls"


def test_stream_raises_queued_exception_on_iteration() -> None:
    fake = FakeModel([ConnectionError("down")])
    iterator = fake.stream(HI)
    assert fake.call_count == 0  # lazily taken, like any generator
    with pytest.raises(ConnectionError, match="down"):
        next(iterator)
    assert fake.call_count == 1


async def test_astream_yields_the_same_chunks() -> None:
    fake = FakeModel(["async streaming works"])
    chunks = [c async for c in fake.astream(HI)]
    assert "".join(c.delta for c in chunks) == "async streaming works"
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 3


async def test_concurrent_tasks_each_get_one_response() -> None:
    fake = FakeModel([f"reply {i}" for i in range(50)])
    results = await asyncio.gather(*(fake.acomplete([Message.user(str(i))]) for i in range(50)))
    assert sorted(r.text for r in results) == sorted(f"reply {i}" for i in range(50))
    assert fake.call_count == 50 and fake.pending == 0


def test_threads_each_get_one_response() -> None:
    fake = FakeModel([str(i) for i in range(400)])
    seen: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(100):
            text = fake.complete(HI).text
            with lock:
                seen.append(text)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen, key=int) == [str(i) for i in range(400)]
    assert len(fake.calls) == 400
