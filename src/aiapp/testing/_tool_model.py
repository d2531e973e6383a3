"""``ToolCallingModel``: a test model that calls every tool it is offered with schema-valid arguments.

It plays the part of pydantic-ai's ``TestModel`` for aiapp: point an agent at it and every tool
runs once, with arguments made from the tool's JSON schema, without writing a script of replies.
The first turn calls all offered tools (in parallel, as native tool calls); once the tool results
are in the conversation, it answers with a JSON object of those results, so a test can assert on
what each tool returned.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiapp.gateway._model import Model, ModelInfo
from aiapp.types import CallOptions, Completion, Message, ToolCall, ToolSpec, Usage

_MAX_DEPTH = 8


class ToolCallingModel(Model):
    """Calls each offered tool once with arguments valid for its schema, then reports the results.

    Args:
        final_text: The reply after the tools ran; ``None`` (default) replies with a JSON object
            mapping each tool's name to the content of its result message.
        name: The model's name in traces.

    Attributes:
        calls: The tool calls it made, in order (to assert on the generated arguments).
    """

    info = ModelInfo(supports_tools=True, supports_streaming=True, supports_json=True)

    def __init__(self, *, final_text: str | None = None, name: str = "test/tool-calling") -> None:
        self.name = name
        self.final_text = final_text
        self.calls: list[ToolCall] = []

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """Tool calls on the first turn with tools offered; the results as JSON afterwards."""
        await asyncio.sleep(0)
        tools = options.tools if options is not None else ()
        answered = {m.tool_call_id for m in messages if m.role == "tool"}
        if tools and not answered:
            made = tuple(
                ToolCall(id=f"call_{i}", name=spec.name, arguments=json.dumps(arguments_for(spec)))
                for i, spec in enumerate(tools)
            )
            self.calls.extend(made)
            return Completion(
                tool_calls=made, finish_reason="tool_calls", model=self.name, usage=Usage(cost_usd=0.0)
            )
        names = {c.id: c.name for m in messages for c in m.tool_calls}
        results = {
            names.get(m.tool_call_id or "", m.tool_call_id or "?"): m.content
            for m in messages
            if m.role == "tool"
        }
        text = self.final_text if self.final_text is not None else json.dumps(results, sort_keys=True)
        return Completion(text=text, model=self.name, usage=Usage(cost_usd=0.0))


def arguments_for(spec: ToolSpec) -> dict[str, Any]:
    """Arguments that satisfy ``spec.parameters`` (required properties, types, enums, bounds)."""
    value = example_for(
        spec.parameters, spec.parameters.get("$defs") or spec.parameters.get("definitions") or {}
    )
    return value if isinstance(value, dict) else {}


def example_for(schema: Mapping[str, Any], defs: Mapping[str, Any], depth: int = 0) -> Any:
    """A value valid for a JSON schema, preferring its ``default``, ``const``, ``enum`` or ``examples``.

    Covers what pydantic and hand-written tool schemas use: ``$ref`` into ``$defs``, ``anyOf``/
    ``oneOf``/``allOf``, ``type`` lists, string ``format``/``minLength``/``pattern``-free strings,
    numeric bounds, arrays with ``minItems`` and objects with ``required`` properties.
    """
    if depth > _MAX_DEPTH:
        return None
    if "$ref" in schema:
        target = defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {})
        return example_for(target, defs, depth + 1)
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    for key in ("anyOf", "oneOf"):
        options = [o for o in schema.get(key) or () if o.get("type") != "null"] or list(schema.get(key) or ())
        if options:
            return example_for(options[0], defs, depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part)
        return example_for(merged, defs, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    return _typed(kind, schema, defs, depth)


def _typed(kind: str, schema: Mapping[str, Any], defs: Mapping[str, Any], depth: int) -> Any:
    if kind == "object":
        properties: Mapping[str, Any] = schema.get("properties") or {}
        required = schema.get("required") or list(properties)
        return {name: example_for(properties.get(name, {}), defs, depth + 1) for name in required}
    if kind == "array":
        items = schema.get("items") or {}
        count = max(1, int(schema.get("minItems", 1)))
        return [example_for(items, defs, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value: float = 1 if low is None else low + (1 if "exclusiveMinimum" in schema else 0)
        high = schema.get("maximum")
        if high is not None and value > high:
            value = high
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema)


def _string(schema: Mapping[str, Any]) -> str:
    formats = {"date": "2026-01-01", "date-time": "2026-01-01T00:00:00Z", "email": "user@example.com"}
    formats |= {"uri": "https://example.com", "uuid": "00000000-0000-4000-8000-000000000000"}
    text = formats.get(str(schema.get("format")), "a")
    low = int(schema.get("minLength", 0))
    if len(text) < low:
        text = text + "a" * (low - len(text))
    high = schema.get("maxLength")
    return text[: int(high)] if high is not None else text
