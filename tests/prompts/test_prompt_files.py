"""Prompt files: schema, rendering in the sandbox, content hashes, and errors naming file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aiapp.errors import PromptError
from aiapp.gateway import PromptRef
from aiapp.prompts import Prompt, PromptMessage, PromptRegistry, Variable

REPO = Path(__file__).resolve().parents[2]

GREET = """\
name: greet
version: 1
description: Say hello.
model: local
params: {temperature: 0.5, max_tokens: 20}
variables:
  who: {type: string, description: Who to greet}
  times: {type: integer, default: 1}
  tags: {type: list, required: false}
messages:
  - role: system
    content: |
      Greet people {{ times }} time(s).
      {% if tags %}Tags: {{ tags | join(", ") }}{% endif %}
  - role: user
    content: "Hello {{ who }}!"
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def registry_with(tmp_path: Path, files: dict[str, str]) -> PromptRegistry:
    for rel, text in files.items():
        write(tmp_path, rel, text)
    return PromptRegistry(tmp_path)


def test_render_fills_defaults_and_checks_types(tmp_path: Path) -> None:
    prompt = registry_with(tmp_path, {"greet/v1.yaml": GREET}).get("greet@v1")
    messages = prompt.render(who="Ada")
    assert [m.role for m in messages] == ["system", "user"]
    assert messages[0].content == "Greet people 1 time(s)."
    assert messages[1].content == "Hello Ada!"
    assert prompt.render({"who": "Bo"}, times=3, tags=["x", "y"])[0].content.endswith("Tags: x, y")
    with pytest.raises(PromptError, match="missing required variable 'who'") as missing:
        prompt.render()
    assert missing.value.path == str(tmp_path / "greet" / "v1.yaml") and missing.value.line == 7
    with pytest.raises(PromptError, match="unknown variable 'whom'"):
        prompt.render(who="Ada", whom="Bo")
    with pytest.raises(PromptError, match="'times' must be integer, got str"):
        prompt.render(who="Ada", times="3")


def test_identity_hash_and_call_options(tmp_path: Path) -> None:
    prompt = registry_with(tmp_path, {"greet/v1.yaml": GREET}).get("greet")
    assert prompt.ref == "greet@v1" and prompt.model == "local"
    assert prompt.prompt_ref() == PromptRef("greet@v1", prompt.content_hash)
    assert len(prompt.content_hash) == 16
    options = prompt.call_options()
    assert options.temperature == 0.5 and options.max_tokens == 20 and options.response_format is None
    # Comments and formatting do not change the hash; content does.
    write(tmp_path, "greet/v2.yaml", "# a comment\n" + GREET.replace("version: 1", "version:   2"))
    write(tmp_path, "greet/v3.yaml", GREET.replace("version: 1", "version: 3").replace("Hello", "Hi"))
    registry = PromptRegistry(tmp_path)
    v1, v2, v3 = (registry.get(f"greet@v{n}") for n in (1, 2, 3))
    assert v1.content_hash != v2.content_hash  # the version number is content
    assert v2.model_copy(update={"version": 1}).content_hash == v1.content_hash
    assert v3.content_hash != v1.content_hash


def test_few_shot_examples_render_as_turns_after_the_system_messages(tmp_path: Path) -> None:
    text = GREET + textwrap.dedent(
        """\
        examples:
          - vars: {who: Bo}
            output: Hi Bo.
        """
    )
    prompt = registry_with(tmp_path, {"greet/v1.yaml": text}).get("greet")
    messages = prompt.render(who="Ada")
    assert [(m.role, m.content) for m in messages[1:]] == [
        ("user", "Hello Bo!"),
        ("assistant", "Hi Bo."),
        ("user", "Hello Ada!"),
    ]


def test_prompts_built_in_code_render_in_the_same_sandbox() -> None:
    prompt = Prompt(
        name="inline",
        version=2,
        variables={"x": Variable(type="any")},
        messages=[PromptMessage(role="user", content="{{ x.__class__ }}")],
    )
    with pytest.raises(PromptError, match="refused by the sandbox") as refused:
        prompt.render(x="text")
    assert "<prompt inline@v2>" in str(refused.value)


def test_runtime_errors_name_the_file_line(tmp_path: Path) -> None:
    text = """\
    name: t
    version: 1
    variables:
      items: {type: list}
    messages:
      - role: user
        content: |
          first line
          {{ items[0].name }}
    """
    prompt = registry_with(tmp_path, {"t/v1.yaml": text}).get("t")
    with pytest.raises(PromptError, match=r"undefined value") as error:
        prompt.render(items=[{"title": "no name"}])
    assert error.value.line == 9  # the template's second line, in the file


def test_the_sandbox_refuses_mutation_and_huge_ranges() -> None:
    prompt = Prompt(
        name="p",
        version=1,
        variables={"xs": Variable(type="list")},
        messages=[PromptMessage(role="user", content="{{ xs.append(1) }}")],
    )
    with pytest.raises(PromptError, match="unsafe"):
        prompt.render(xs=[1])
    huge = Prompt(
        name="p", version=1, messages=[PromptMessage(role="user", content="{{ range(10**9) | list }}")]
    )
    with pytest.raises(PromptError, match="Range too big"):
        huge.render()


def test_json_output_sets_the_response_format(tmp_path: Path) -> None:
    text = """\
    name: j
    version: 1
    messages: [{role: user, content: Give JSON}]
    output:
      type: json
      schema: {type: object, required: [a], properties: {a: {type: integer}}}
    """
    options = registry_with(tmp_path, {"j/v1.yaml": text}).get("j").call_options()
    assert options.response_format is not None and options.response_format.type == "json_schema"
    assert options.response_format.json_schema == {
        "type": "object",
        "required": ["a"],
        "properties": {"a": {"type": "integer"}},
    }


def test_shipped_prompts_load_and_render() -> None:
    registry = PromptRegistry(REPO / "prompts")
    assert registry.check() == []
    production = registry.get("support_answer")
    assert production.ref == "support_answer@v2" == registry.get("support_answer@production").ref
    assert registry.get("support_answer@baseline").ref == "support_answer@v1"
    messages = production.render(question="How?", context="[1] faq.md\nLike this.")
    assert "<context>\n[1] faq.md\nLike this.\n</context>" in messages[-1].content
    assert "<question>How?</question>" in messages[-1].content
    assert "I could not find an answer" in messages[0].content  # v2's explicit "not in the docs" reply
    assert registry.get("ticket_triage").output.json_schema is not None
