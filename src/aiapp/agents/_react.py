"""The ReAct text protocol, for models without native tool calling.

The model is shown the tools and asked to reply either with an action::

    Thought: I should look this up.
    Action: search
    Action Input: {"query": "default port"}

or with the answer::

    Thought: I know the answer now.
    Final Answer: 11434

Observations come back as user messages: each result inside ``<context>`` tags, followed by the task
restated on a ``Question:`` line. That is the shape the offline ``local/extractive`` baseline reads,
so it answers from what the tools returned. A reply with neither an action nor a final answer is
taken as the final answer, as such a baseline writes one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiapp.agents._tool import Tool
from aiapp.types import Message

STOP = ("\nObservation:",)
"""Stop sequences: a model must not write the observation itself."""

_OBSERVATION_RE = re.compile(r"(?:^|\n)\s*Observation\s*:", re.I)
_ACTION_RE = re.compile(
    r"^[ \t*]*Action[ \t*]*:[ \t]*(?P<name>[^\n]*)\n"
    r"(?:[ \t]*\n)*[ \t*]*Action[ \t]*Input[ \t*]*:[ \t]*(?P<input>.*?)"
    r"(?=^[ \t*]*(?:Thought|Action|Final[ \t]+Answer)[ \t*]*:|\Z)",
    re.I | re.M | re.S,
)
_BARE_ACTION_RE = re.compile(r"^[ \t*]*Action[ \t*]*:", re.I | re.M)
_FINAL_RE = re.compile(r"^[ \t*]*Final[ \t]+Answer[ \t*]*:[ \t]*", re.I | re.M)
_THOUGHT_RE = re.compile(r"^[ \t*]*Thought[ \t*]*:[ \t]*", re.I | re.M)
_FENCE_RE = re.compile(r"^```[A-Za-z]*\s*\n?(.*?)\n?```$", re.S)

INSTRUCTIONS = """\
You can use these tools:

{tools}

To use a tool, reply in exactly this format and stop:
Thought: <why you need the tool>
Action: <one tool name from: {names}>
Action Input: <the arguments as one JSON object>

You will then get an Observation with the tool's result. When you can answer, reply:
Thought: <your reasoning>
Final Answer: <the answer to the question>"""


@dataclass
class ReactReply:
    """A parsed ReAct reply.

    Attributes:
        text: The reply, cut before any observation the model wrote itself.
        actions: ``(tool name, raw JSON input)`` pairs, in order.
        final: The final answer, when the reply gives one (and no action comes before it).
        error: What is wrong with the format, when it is malformed.
    """

    text: str
    actions: list[tuple[str, str]] = field(default_factory=list)
    final: str | None = None
    error: str | None = None


def system_prompt(base: str, tools: Sequence[Tool]) -> str:
    """``base`` followed by the tool list and the protocol's instructions."""
    if not tools:
        return base
    lines = []
    for t in tools:
        schema = json.dumps(t.schema.parameters, ensure_ascii=False, separators=(",", ":"))
        lines.append(
            f"- {t.name}: {t.description or '(no description)'}\n  Arguments (JSON schema): {schema}"
        )
    names = ", ".join(t.name for t in tools)
    return f"{base}\n\n{INSTRUCTIONS.format(tools=chr(10).join(lines), names=names)}".strip()


def parse(text: str) -> ReactReply:
    """Parse a reply into actions, a final answer, or a format error."""
    cut = _OBSERVATION_RE.search(text)
    body = text[: cut.start()] if cut else text
    final_match = _FINAL_RE.search(body)
    actions: list[tuple[str, str]] = []
    for match in _ACTION_RE.finditer(body):
        if final_match is not None and match.start() > final_match.start():
            break
        name = match.group("name").strip().strip("`'\"*").strip()
        actions.append((name, _strip_fence(match.group("input").strip())))
    if actions:
        return ReactReply(body.strip(), actions=actions)
    bare = _BARE_ACTION_RE.search(body)
    if bare is not None and (final_match is None or bare.start() < final_match.start()):
        return ReactReply(
            body.strip(),
            error="an 'Action:' line must be followed by an 'Action Input:' line with a JSON object",
        )
    if final_match is not None:
        return ReactReply(body.strip(), final=body[final_match.end() :].strip())
    return ReactReply(body.strip(), final=_THOUGHT_RE.sub("", body).strip())


def task_message(task: str) -> Message:
    """The first user message of a ReAct conversation."""
    return Message.user(f"Question: {task}")


def observation_message(results: Sequence[tuple[str, str]], task: str) -> Message:
    """One user message with every tool result of a step, then the task restated."""
    parts = [f"Observation from {name}:\n<context>\n{result}\n</context>" for name, result in results]
    parts.append(
        f"Reply with the next Thought and Action, or with the Final Answer to the question.\nQuestion: {task}"
    )
    return Message.user("\n\n".join(parts))


def format_error_message(error: str, task: str) -> Message:
    """Tell the model its reply did not follow the protocol."""
    return Message.user(
        f"Observation: your reply could not be parsed: {error}. Use the Thought/Action/Action Input "
        f"format, or give the Final Answer.\nQuestion: {task}"
    )


def action_text(name: str, arguments: str, thought: str = "") -> str:
    """Render an action the agent takes itself (prefetch) in the protocol's format."""
    head = f"Thought: {thought}\n" if thought else ""
    return f"{head}Action: {name}\nAction Input: {arguments}"


def _strip_fence(raw: str) -> str:
    match = _FENCE_RE.match(raw.strip())
    return match.group(1).strip() if match else raw.strip()
