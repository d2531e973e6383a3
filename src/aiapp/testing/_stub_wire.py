"""The OpenAI wire format as the stub server writes it: completions, SSE chunks, embeddings, errors.

Pure functions of the request body, so the server's handler stays a thin dispatcher.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
from functools import lru_cache
from typing import Any

DEFAULT_MODEL = "stub-model"
EMBEDDING_DIM = 64
GARBAGE = b"<html><body><h1>502 Bad Gateway</h1>stub garbage, not JSON</body></html>"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _words(text: str) -> int:
    return len(text.split())


def _default_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return "stub reply: " + _text_of(message.get("content"))[:200]
    return "stub reply: "


def plan_reply(body: dict[str, Any], scripted: dict[str, Any] | None) -> tuple[str | None, list[Any], str]:
    """Return (content, tool_calls as OpenAI dicts, finish_reason) for a chat request."""
    if scripted is not None:
        calls = [
            {
                "id": str(c.get("id") or f"call_{i}"),
                "type": "function",
                "function": {"name": str(c["name"]), "arguments": str(c.get("arguments") or "{}")},
            }
            for i, c in enumerate(scripted.get("tool_calls") or ())
        ]
        content = scripted.get("content")
        finish = scripted.get("finish_reason") or ("tool_calls" if calls else "stop")
        return (content if content or not calls else None), calls, str(finish)
    text = _default_text(body.get("messages") or [])
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        text = json.dumps({"answer": text})
    return text, [], "stop"


def _usage(body: dict[str, Any], content: str | None, calls: list[Any]) -> dict[str, int]:
    messages = body.get("messages") or []
    prompt = sum(_words(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
    completion = _words(content or "") + sum(_words(c["function"]["arguments"]) for c in calls)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_body(
    body: dict[str, Any], n: int, content: str | None, calls: list[Any], finish: str
) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return json.dumps(
        {
            "id": f"chatcmpl-stub-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or DEFAULT_MODEL,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": _usage(body, content, calls),
        }
    ).encode()


def stream_events(
    body: dict[str, Any], n: int, content: str | None, calls: list[Any], finish: str
) -> list[bytes]:
    """The SSE events of a streamed reply, without the final ``[DONE]``."""
    head = {
        "id": f"chatcmpl-stub-{n}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model") or DEFAULT_MODEL,
    }
    deltas: list[dict[str, Any]] = []
    if content:
        words = content.split(" ")
        deltas.extend({"content": w + " "} for w in words[:-1])
        if words[-1]:
            deltas.append({"content": words[-1]})
    for i, call in enumerate(calls):
        fn = call["function"]
        deltas.append(
            {
                "tool_calls": [
                    {
                        "index": i,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": fn["name"], "arguments": ""},
                    }
                ]
            }
        )
        args = fn["arguments"]
        deltas.extend(
            {"tool_calls": [{"index": i, "function": {"arguments": args[k : k + 16]}}]}
            for k in range(0, len(args), 16)
        )
    if not deltas:
        deltas.append({"content": ""})
    deltas[0] = {"role": "assistant", **deltas[0]}
    events = [
        _sse({**head, "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}]})
        for d in deltas
    ]
    events.append(
        _sse({**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}]})
    )
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        events.append(_sse({**head, "choices": [], "usage": _usage(body, content, calls)}))
    return events


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


@lru_cache(maxsize=65536)
def _token_slot(token: str, dim: int) -> tuple[int, float]:
    digest = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
    return digest % dim, (1.0 if (digest >> 63) & 1 else -1.0)


def embed_text(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """The stub's deterministic embedding: hashed lower-cased tokens, L2-normalised.

    Texts sharing words get similar vectors, so retrieval code behaves sensibly against the stub.
    An empty text maps to the first unit vector.
    """
    vec = [0.0] * dim
    for token in text.lower().split():
        slot, sign = _token_slot(token.strip(".,;:!?\"'()[]{}"), dim)
        vec[slot] += sign
    norm = sum(v * v for v in vec) ** 0.5
    if norm == 0:
        vec[0] = 1.0
        return vec
    return [v / norm for v in vec]


def embeddings_body(body: dict[str, Any]) -> bytes:
    raw = body.get("input", "")
    inputs = [raw] if isinstance(raw, str) else list(raw)
    texts = [
        t if isinstance(t, str) else " ".join(map(str, t)) if isinstance(t, list) else str(t) for t in inputs
    ]
    dim = body.get("dimensions") or EMBEDDING_DIM
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for i, text in enumerate(texts):
        vec = embed_text(text, int(dim))
        value: Any = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode() if as_base64 else vec
        data.append({"object": "embedding", "index": i, "embedding": value})
    tokens = sum(_words(t) for t in texts)
    return json.dumps(
        {
            "object": "list",
            "data": data,
            "model": body.get("model") or DEFAULT_MODEL,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    ).encode()


def error_body(message: str, type_: str, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()
