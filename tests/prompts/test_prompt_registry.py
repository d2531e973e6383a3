"""The registry: references, labels, and `check` naming file, line and problem for each kind of mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aiapp.errors import PromptError
from aiapp.prompts import Problem, PromptRegistry, Ref, get, parse_ref

GOOD = """\
name: {name}
version: {version}
variables:
  q: {{type: string}}
messages:
  - role: user
    content: "v{version}: {{{{ q }}}}"
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def good(root: Path, name: str, version: int) -> Path:
    return write(root, f"{name}/v{version}.yaml", GOOD.format(name=name, version=version))


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    good(tmp_path, "answer", 1)
    good(tmp_path, "answer", 2)
    good(tmp_path, "answer", 3)
    good(tmp_path, "other", 1)
    write(tmp_path, "labels.yaml", "production: [answer@v2, other@v1]\ncanary: answer@v3\n")
    return tmp_path


def test_parse_ref() -> None:
    assert parse_ref("a") == Ref("a")
    assert parse_ref("a@v12") == Ref("a", version=12)
    assert parse_ref("a@production") == Ref("a", label="production")
    assert str(parse_ref("a@v2")) == "a@v2"
    for bad in ("", "a@", "a@2", "a/b", "@v1", "a@Prod"):
        with pytest.raises(PromptError, match="bad prompt reference"):
            parse_ref(bad)


def test_references_and_labels(prompts: Path) -> None:
    registry = PromptRegistry(prompts)
    assert registry.names() == ["answer", "other"] and registry.versions("answer") == [1, 2, 3]
    assert registry.get("answer").version == 2  # a bare name serves production
    assert registry.get("answer@canary").version == 3
    assert registry.get("answer", label="canary").version == 3
    assert registry.get("answer@latest").version == 3
    assert registry.get("answer@v1").version == 1 == registry.get("answer", version=1).version
    assert registry.labels("answer") == {"canary": 3, "production": 2, "latest": 3}
    assert registry.all_labels() == {"canary": {"answer": 3}, "production": {"answer": 2, "other": 1}}
    assert registry.get("answer@v1").render(q="hi")[0].content == "v1: hi"
    assert get("answer@canary", directory=prompts).version == 3


def test_a_name_without_production_serves_its_latest_version(tmp_path: Path) -> None:
    good(tmp_path, "solo", 1)
    good(tmp_path, "solo", 2)
    assert PromptRegistry(tmp_path).get("solo").version == 2


def test_lookup_errors_say_what_exists(prompts: Path) -> None:
    registry = PromptRegistry(prompts)
    with pytest.raises(PromptError, match=r"unknown prompt 'nope' \(known: answer, other\)"):
        registry.get("nope")
    with pytest.raises(PromptError, match=r"no version v9 \(versions: v1, v2, v3\)"):
        registry.get("answer@v9")
    with pytest.raises(PromptError, match=r"no label 'staging' \(labels: canary, production, latest\)"):
        registry.get("answer@staging")
    with pytest.raises(PromptError, match="not both"):
        registry.get("answer@v1", label="production")
    with pytest.raises(PromptError, match="does not exist"):
        PromptRegistry(prompts / "missing")


def test_check_is_empty_for_a_valid_directory(prompts: Path) -> None:
    assert PromptRegistry(prompts).check() == []


CASES = {
    "unknown key": (
        "name: bad\nversion: 1\ntemprature: 0.2\nmessages: [{role: user, content: hi}]\n",
        3,
        "unknown key 'temprature'",
    ),
    "unknown nested key": (
        "name: bad\nversion: 1\nparams:\n  temperature: 0\n  max_tokenz: 5\nmessages: [{role: user, content: hi}]\n",
        5,
        "unknown key 'max_tokenz' under params",
    ),
    "bad YAML": ("name: bad\nversion: 1\nmessages:\n  - role: user\n   content: hi\n", 5, "invalid YAML"),
    "undefined variable": (
        "name: bad\nversion: 1\nvariables: {question: {}}\nmessages:\n  - role: user\n"
        "    content: |\n      Q: {{ question }}\n      C: {{ contxt }}\n",
        8,
        "undefined template variable 'contxt'",
    ),
    "sandbox escape": (
        "name: bad\nversion: 1\nmessages:\n  - role: user\n    content: \"{{ ''.__class__.__mro__ }}\"\n",
        5,
        "access to '__class__' is refused",
    ),
    "escape through a filter": (
        "name: bad\nversion: 1\nvariables: {x: {type: any}}\nmessages:\n"
        "  - {role: user, content: \"{{ x | attr('__globals__') }}\"}\n",
        5,
        "access to '__globals__' is refused",
    ),
    "template syntax": (
        "name: bad\nversion: 1\nmessages:\n  - role: system\n    content: |\n      ok\n      {% if %}\n",
        7,
        "template syntax error",
    ),
    "name mismatch": (
        "name: wrong\nversion: 1\nmessages: [{role: user, content: hi}]\n",
        1,
        "must match its directory",
    ),
    "version mismatch": (
        "name: bad\nversion: 2\nmessages: [{role: user, content: hi}]\n",
        2,
        "must match the file name",
    ),
    "missing messages": ("name: bad\nversion: 1\n", 1, "missing required key 'messages'"),
    "bad default type": (
        "name: bad\nversion: 1\nvariables:\n  n: {type: integer, default: many}\nmessages: [{role: user, content: hi}]\n",
        4,
        "default 'many' is not of type integer",
    ),
    "invalid output schema": (
        "name: bad\nversion: 1\nmessages: [{role: user, content: hi}]\noutput: {type: json, schema: {type: objekt}}\n",
        4,
        "invalid JSON schema",
    ),
    "example output against the schema": (
        "name: bad\nversion: 1\nmessages: [{role: user, content: hi}]\n"
        "output: {type: json, schema: {type: object, required: [a]}}\nexamples:\n  - output: {b: 1}\n",
        6,
        "examples[0].output does not match the output schema: <root>: 'a' is a required property",
    ),
    "example missing a variable": (
        "name: bad\nversion: 1\nvariables: {q: {}}\nmessages: [{role: user, content: '{{ q }}'}]\n"
        "examples:\n  - vars: {}\n    output: hi\n",
        3,
        "examples[0]: missing required variable 'q'",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_names_file_line_and_problem(tmp_path: Path, case: str) -> None:
    text, line, message = CASES[case]
    path = tmp_path / "bad" / "v1.yaml"
    path.parent.mkdir()
    path.write_text(text)
    registry = PromptRegistry(tmp_path)
    problems = registry.check()
    assert problems, case
    first = problems[0]
    assert first.path == str(path)
    assert first.line == line, problems
    assert message in first.message, problems
    assert str(first).startswith(f"{path}:{line}: ")
    if case not in ("example output against the schema", "example missing a variable"):
        # A version with a load-time problem refuses to load, with the same message.
        with pytest.raises(PromptError) as refused:
            registry.get("bad@v1")
        assert refused.value.path == str(path) and message in str(refused.value)


def test_labels_pointing_at_missing_versions_or_prompts(prompts: Path) -> None:
    write(
        prompts,
        "labels.yaml",
        """\
        production:
          - answer@v2
          - answer@v7
        staging: [ghost@v1]
        canary: [answer@canary]
        dup: [other@v1, other@v1]
        latest: [answer@v1]
        V2: [answer@v1]
        """,
    )
    labels = str(prompts / "labels.yaml")
    problems = PromptRegistry(prompts).check()
    assert [(p.path, p.line) for p in problems] == [(labels, n) for n in (3, 4, 5, 6, 7, 8)]
    messages = [p.message for p in problems]
    assert (
        "label 'production' points at answer@v7, which does not exist (versions: v1, v2, v3)" in messages[0]
    )
    assert "unknown prompt 'ghost'" in messages[1]
    assert "must name a version, like answer@v1" in messages[2]
    assert "names 'other' twice" in messages[3]
    assert "'latest' is built in" in messages[4]
    assert "bad label 'V2'" in messages[5]
    # The valid entries still work.
    assert PromptRegistry(prompts).get("answer").version == 2


def test_stray_files_are_problems(prompts: Path) -> None:
    write(prompts, "answer/draft.yaml", "name: answer\n")
    write(prompts, "loose.yaml", "name: x\n")
    write(prompts, "README.md", "# prompts\n")  # other files are fine
    problems = PromptRegistry(prompts).check()
    assert {Path(p.path).name for p in problems} == {"draft.yaml", "loose.yaml"}


def test_one_broken_file_does_not_hide_the_others(prompts: Path) -> None:
    write(prompts, "answer/v4.yaml", "name: answer\nversion: 4\nmessages: [\n")
    registry = PromptRegistry(prompts)
    assert registry.get("answer@v3").version == 3
    with pytest.raises(PromptError, match="invalid YAML"):
        registry.get("answer@latest")
    assert [Path(p.path).name for p in registry.problems] == ["v4.yaml"]


def test_problem_from_error_keeps_the_message() -> None:
    error = PromptError("boom", path="p/v1.yaml", line=3)
    assert Problem.from_error(error, path="x") == Problem("p/v1.yaml", 3, "boom")
