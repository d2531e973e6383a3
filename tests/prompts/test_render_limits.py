"""Rendering limits: a template cannot run away in time, loop iterations or output size.

Each limit is a PromptError naming the prompt file and the template line being rendered, and
``aiapp prompts check`` reports it instead of hanging (the nested-loop case hung before).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aiapp.errors import PromptError
from aiapp.prompts import PromptRegistry, RenderLimits
from aiapp.prompts._render import Template

NESTED = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"


def write_prompt(root: Path, content: str, *, name: str = "p") -> Path:
    path = root / name / "v1.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = textwrap.indent(content, " " * 6)
    path.write_text(f"name: {name}\nversion: 1\nmessages:\n  - role: user\n    content: |\n{body}\n")
    return path


def render(source: str, limits: RenderLimits | None = None, **variables: object) -> str:
    return Template(source, path="prompts/p/v1.yaml", first_line=10, label="m", limits=limits).render(
        variables
    )


def test_nested_large_loops_stop_at_the_iteration_limit_naming_the_line() -> None:
    with pytest.raises(PromptError, match="more than 100,000 loop iterations") as info:
        render("intro\n" + NESTED)
    assert info.value.path == "prompts/p/v1.yaml" and info.value.line == 11


def test_iterations_count_across_loops_and_over_passed_values() -> None:
    limits = RenderLimits(max_loop_iterations=10)
    assert render("{% for x in xs %}{{ x }}{% endfor %}", limits, xs=list(range(10))) == "0123456789"
    with pytest.raises(PromptError, match="more than 10 loop iterations"):
        render("{% for x in xs %}{% endfor %}\n{% for x in xs %}{% endfor %}", limits, xs=list(range(6)))


def test_output_over_the_size_limit_names_the_line() -> None:
    hundred_mb = "a\n{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}"  # 100 MB before
    with pytest.raises(PromptError, match="output over 1,000,000 characters") as info:
        render(hundred_mb)
    assert info.value.line == 11
    small = RenderLimits(max_output_chars=5)
    assert render("abcde", small) == "abcde"
    with pytest.raises(PromptError, match="output over 5 characters"):
        render("{{ s }}", small, s="abcdef")


def test_a_single_huge_repetition_or_power_is_refused_before_it_is_built() -> None:
    with pytest.raises(PromptError, match="'\\*' would build a value of 100,000,000 items") as info:
        render("a\nb\n{{ 'x' * 10**8 }}")
    assert info.value.line == 12
    with pytest.raises(PromptError, match="'\\*\\*' would build a number"):
        render("{{ 2 ** 10000000000 }}")
    assert render("{{ 'ab' * 2 }} {{ [1] * 2 }} {{ 2 * 3 }} {{ 2 ** 10 }} {{ 2.0 ** 0.5 }}") == (
        "abab [1, 1] 6 1024 1.4142135623730951"
    )


def test_wall_time_is_checked_in_calls_without_any_loop() -> None:
    # 2**40 macro calls and no {% for %}: only the cooperative clock check stops it.
    source = "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    with pytest.raises(PromptError, match=r"took longer than 0\.05 s"):
        render(source, RenderLimits(max_seconds=0.05))


def test_loops_behave_as_before() -> None:
    source = "{% for i in xs %}{{ loop.index }}/{{ loop.length }}{% if loop.last %}!{% endif %} {% endfor %}"
    assert render(source, xs=["a", "b"]) == "1/2 2/2!"
    assert render("{% for i in xs %}x{% else %}none{% endfor %}", xs=[]) == "none"
    assert render("{% for k, v in d.items() if v %}{{ k }}{% endfor %}", d={"a": 1, "b": 0}) == "a"


def test_the_registry_applies_its_limits_and_check_names_file_and_line(tmp_path: Path) -> None:
    path = write_prompt(tmp_path, "{% for i in range(50) %}x{% endfor %}")
    assert PromptRegistry(tmp_path).check() == []
    [problem] = PromptRegistry(tmp_path, limits=RenderLimits(max_loop_iterations=20)).check()
    assert problem.path == str(path) and problem.line == 6
    assert "more than 20 loop iterations" in problem.message


def test_prompts_check_reports_nested_loops_instead_of_hanging(tmp_path: Path) -> None:
    path = write_prompt(tmp_path, "hello\n" + NESTED)
    # The timeout only turns the old hang into a failure; the new check takes well under a second.
    result = subprocess.run(
        [sys.executable, "-m", "aiapp.cli", "prompts", "check", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert f"{path}:7: messages[0] (user): render limit exceeded: more than 100,000 loop iterations" in (
        result.stdout
    )
