"""Sandboxed Jinja2 rendering for prompt templates: the only module of aiapp that imports Jinja2.

Prompt files are data, not code. Templates are compiled in an
:class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` (no attribute starting with ``_``, no Python
internals, no mutation of values passed in) with :class:`~jinja2.StrictUndefined` (a variable the
caller did not pass is an error, never an empty string). On top of the sandbox's runtime refusal,
:meth:`Template.problems` inspects the parsed template statically, so ``aiapp prompts check`` can
refuse an escape attempt such as ``{{ ''.__class__.__mro__ }}`` and name its line without rendering.

Lines: every template knows the file line its first line sits on (``first_line``), so errors name
the prompt file's line rather than the template's.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from aiapp.errors import PromptError

__all__ = ["TEMPLATE_FILENAME", "Template", "TemplateIssue"]

TEMPLATE_FILENAME = "<aiapp-prompt>"
"""The file name compiled templates carry; used to find template lines in tracebacks."""

# Filters that reach attributes or call by name, which the static check inspects for "_" names.
_NAME_FILTERS = frozenset({"attr", "map", "selectattr", "rejectattr", "sort", "groupby", "sum", "unique"})


@functools.lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # prompts are plain text, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


@dataclass(frozen=True)
class TemplateIssue:
    """A problem found in a template without rendering it.

    Attributes:
        line: The file line (``first_line`` applied), when known.
        message: What is wrong.
    """

    line: int | None
    message: str


class Template:
    """One compiled, sandboxed template (a prompt message's content).

    Args:
        source: The template text.
        path: The prompt file, named in errors (``None`` for prompts built in code).
        first_line: The file line of the template's first line (``None`` when unknown).
        label: What the template is, for messages (e.g. ``messages[1].content``).

    Raises:
        PromptError: the template has a syntax error (naming the file and line).
    """

    def __init__(self, source: str, *, path: str | None, first_line: int | None, label: str) -> None:
        self.source = source
        self.path = path
        self.first_line = first_line
        self.label = label
        env = _environment()
        try:
            self._ast = env.parse(source, filename=TEMPLATE_FILENAME)
            code = env.compile(self._ast, filename=TEMPLATE_FILENAME)
        except jinja2.TemplateSyntaxError as exc:
            raise PromptError(
                f"{label}: template syntax error: {exc.message}", path=path, line=self._file_line(exc.lineno)
            ) from None
        self._template = env.template_class.from_code(env, code, env.make_globals(None))

    def variables(self) -> set[str]:
        """Names the template reads from its context (excluding Jinja globals such as ``range``)."""
        return set(meta.find_undeclared_variables(self._ast)) - set(_environment().globals)

    def problems(self, declared: set[str]) -> list[TemplateIssue]:
        """Static problems: variables that are not declared, and access to ``_`` attributes.

        Args:
            declared: The variable names the prompt declares.

        Returns:
            One issue per problem, in line order.
        """
        issues: list[TemplateIssue] = []
        for name in sorted(self.variables() - declared):
            line = next((n.lineno for n in self._ast.find_all(nodes.Name) if n.name == name), None)
            issues.append(
                TemplateIssue(
                    self._file_line(line),
                    f"{self.label}: undefined template variable {name!r} "
                    "(declare it under variables:, or fix the spelling)",
                )
            )
        for line, attribute in _unsafe_names(self._ast):
            issues.append(
                TemplateIssue(
                    self._file_line(line),
                    f"{self.label}: access to {attribute!r} is refused: templates may not reach "
                    "attributes starting with '_' (a sandbox escape attempt)",
                )
            )
        return sorted(issues, key=lambda issue: (issue.line or 0, issue.message))

    def render(self, variables: Mapping[str, Any]) -> str:
        """Render with ``variables`` in the sandbox.

        Raises:
            PromptError: an undefined variable, a refused (unsafe) operation or any other rendering
                failure, naming the file and the line where Jinja reports one.
        """
        try:
            return self._template.render(dict(variables)).strip()
        except jinja2.exceptions.SecurityError as exc:
            raise self._error(f"refused by the sandbox: {exc}", exc) from None
        except jinja2.UndefinedError as exc:
            raise self._error(f"undefined value: {exc.message}", exc) from None
        except jinja2.TemplateError as exc:
            raise self._error(f"template error: {exc}", exc) from None
        except Exception as exc:  # a filter or test failing on a value: still the template's fault
            raise self._error(f"rendering failed: {type(exc).__name__}: {exc}", exc) from None

    def _error(self, message: str, exc: BaseException) -> PromptError:
        line = _template_line(exc.__traceback__)
        return PromptError(f"{self.label}: {message}", path=self.path, line=self._file_line(line))

    def _file_line(self, template_line: int | None) -> int | None:
        if self.first_line is None:
            return None
        if template_line is None:
            return self.first_line
        return self.first_line + template_line - 1


def _unsafe_names(ast: nodes.Template) -> Iterator[tuple[int, str]]:
    """``(line, name)`` for every attribute or key starting with ``_`` the template reaches for."""
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            yield node.lineno, node.attr
        elif isinstance(node, nodes.Getitem):
            arg = node.arg
            if isinstance(arg, nodes.Const) and isinstance(arg.value, str) and arg.value.startswith("_"):
                yield node.lineno, arg.value
        elif isinstance(node, nodes.Filter) and node.name in _NAME_FILTERS:
            values = [*node.args, *(kw.value for kw in node.kwargs)]
            for value in values:
                if (
                    isinstance(value, nodes.Const)
                    and isinstance(value.value, str)
                    and any(part.startswith("_") for part in value.value.split("."))
                ):
                    yield node.lineno, value.value


def _template_line(tb: TracebackType | None) -> int | None:
    """The last template line in a traceback (Jinja rewrites frames to point at template lines)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
