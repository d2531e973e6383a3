"""``synthesize`` through the real OpenAI-compatible provider path, against the local stub server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiapp.config import Deployment, Route, Settings
from aiapp.evals._synth import SynthChunk, synthesize
from aiapp.gateway import Gateway

SHARED = "The server reads its settings from environment variables each time it starts."
TOPICS = ["port", "host", "models", "origins", "keepalive", "parallel", "queue", "flash"]
CHUNKS = [
    SynthChunk(f"docs/{t}.md#{i:04x}", f"docs/{t}.md", f"{SHARED} This page is about the {t} setting.", (t,))
    for i, t in enumerate(TOPICS)
]


def _pair(question: str, answer: str = SHARED) -> str:
    return json.dumps({"pairs": [{"question": question, "answer": answer}]})


def test_synth_on_the_stub_server_is_non_empty_deduplicated_and_grounded(stub: Any, aiapp_home: Path) -> None:
    settings = Settings(
        routes={
            "writer": Route(
                deployments=[Deployment(model="openai/stub-model", api_base=stub.base_url, timeout_s=10)]
            )
        }
    )
    settings.home = aiapp_home
    stub.queue_replies(
        "Sure, here you go: {oops",  # garbage: re-asked once
        _pair("When does the server read its settings?"),
        _pair("Where do the server's settings come from?"),
        _pair("Where do the server's settings come from"),  # the same question again
        _pair("Which GPU is fastest?", "The newest Nvidia card is always twice as fast."),  # unsupported
        _pair("How often are the settings read?"),
        _pair("What does the server read when it starts?"),
    )
    with Gateway(settings) as gw:
        result = synthesize(
            CHUNKS, gateway=gw, route="writer", n=4, kinds=["factual"], concurrency=1, min_chars=20
        )
    questions = [r["question"] for r in result.rows]
    assert questions == [
        "When does the server read its settings?",
        "Where do the server's settings come from?",
        "How often are the settings read?",
        "What does the server read when it starts?",
    ]
    assert all(r["gold_ids"][0] in {c.chunk_id for c in CHUNKS} for r in result.rows)
    assert all(r["answer"] == SHARED for r in result.rows)
    report = result.report
    assert (
        report.reasked == {"reply is not JSON": 1}
        and not report.unusable
        and report.duplicates == 1
        and report.unsupported == 1
    )
    assert report.calls == 7 and report.rounds == 1
    sent = stub.requests("chat")
    assert sent and sent[0]["response_format"]["type"] == "json_schema"
    assert sent[0]["response_format"]["json_schema"]["name"] == "QAPairs"
