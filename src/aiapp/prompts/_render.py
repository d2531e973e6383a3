"""Sandboxed Jinja2 rendering for prompt templates: the only module of aiapp that imports Jinja2.

Prompt files are data, not code. Templates are compiled in an
:class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` (no attribute starting with ``_``, no Python
internals, no mutation of values passed in) with :class:`~jinja2.StrictUndefined` (a variable the
caller did not pass is an error, never an empty string). On top of the sandbox's runtime refusal,
:meth:`Template.problems` inspects the parsed template statically, so ``aiapp prompts check`` can
refuse an escape attempt such as ``{{ ''.__class__.__mro__ }}`` and name its line without rendering.

Lines: every template knows the file line its first line sits on (``first_line``), so errors name
the prompt file's line rather than the template's.

Limits (:class:`RenderLimits`): one pull request must not be able to stall ``aiapp prompts check``
or a serving process. Every ``{% for %}`` iterable is wrapped (an AST rewrite before compiling)
so each iteration counts against a per-render cap; the wall time is checked cooperatively on
those iterations and on every sandboxed call (macros, ``range``, ``loop()``);
output is streamed and stopped at a size cap; ``*`` (string/list repetition) and ``**`` are
checked before they build a huge value. Exceeding one raises :class:`~aiapp.errors.PromptError`
naming the file and the line being rendered.
"""

from __future__ import annotations

import contextvars
import functools
import operator
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from aiapp.errors import PromptError
from aiapp.prompts._model import RenderLimits

__all__ = ["TEMPLATE_FILENAME", "RenderLimits", "Template", "TemplateIssue"]

TEMPLATE_FILENAME = "<aiapp-prompt>"
"""The file name compiled templates carry; used to find template lines in tracebacks."""

# Filters that reach attributes or call by name, which the static check inspects for "_" names.
_NAME_FILTERS = frozenset({"attr", "map", "selectattr", "rejectattr", "sort", "groupby", "sum", "unique"})


_LOOP_FILTER = "aiapp_counted_loop"
"""The filter every ``{% for %}`` iterable is wrapped in: it counts iterations against the limits."""

_CHECK_EVERY = 64  # iterations / calls / chunks between wall-clock checks


class _LimitExceeded(Exception):
    """Raised inside a render when a :class:`RenderLimits` limit is exceeded."""


class _Budget:
    """The running costs of one render (held in a context variable while it runs)."""

    __slots__ = ("deadline", "iterations", "limits", "ticks")

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.iterations = 0
        self.ticks = 0
        self.deadline = time.monotonic() + limits.max_seconds

    def tick(self) -> None:
        self.ticks += 1
        if self.ticks % _CHECK_EVERY == 0 and time.monotonic() > self.deadline:
            raise _LimitExceeded(
                f"rendering took longer than {self.limits.max_seconds:g} s (render limit max_seconds)"
            )

    def count(self, iterable: Iterable[Any]) -> Iterator[Any]:
        limit = self.limits.max_loop_iterations
        for item in iterable:
            self.iterations += 1
            if self.iterations > limit:
                raise _LimitExceeded(
                    f"more than {limit:,} loop iterations in one render (render limit max_loop_iterations)"
                )
            self.tick()
            yield item


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("aiapp_render_budget", default=None)


def _counted_loop(iterable: Any) -> Any:
    budget = _budget.get()
    if budget is None:  # rendered outside Template.render (not expected): unlimited as before
        return iterable
    return budget.count(iterable)


class _LimitedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox plus cooperative limits: calls tick the wall clock; ``*`` and ``**`` are sized."""

    intercepted_binops = frozenset({"*", "**"})

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget.get()
        if budget is not None:
            budget.tick()
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        budget = _budget.get()
        limits = budget.limits if budget is not None else RenderLimits()
        if operator_ == "*":
            size = _repeat_size(left, right)
            if size is not None and size > limits.max_output_chars:
                raise _LimitExceeded(
                    f"'*' would build a value of {size:,} items, over the {limits.max_output_chars:,} "
                    "output limit (render limit max_output_chars)"
                )
            return operator.mul(left, right)
        if operator_ == "**":
            bits = _power_bits(left, right)
            if bits > 8 * limits.max_output_chars:
                raise _LimitExceeded(f"'**' would build a number of about {bits:,} bits (render limit)")
            return operator.pow(left, right)
        return super().call_binop(context, operator_, left, right)


def _repeat_size(left: Any, right: Any) -> int | None:
    """The length ``left * right`` would have, when it repeats a sequence."""
    for seq, times in ((left, right), (right, left)):
        if (
            isinstance(seq, str | bytes | list | tuple)
            and isinstance(times, int)
            and not isinstance(times, bool)
        ):
            return len(seq) * max(times, 0)
    return None


def _power_bits(base: Any, exponent: Any) -> int:
    """Roughly how many bits an integer ``base ** exponent`` needs (0 when it is not an int power)."""
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0 or abs(base) < 2:
        return 0
    return int(abs(base).bit_length()) * exponent


@functools.lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = _LimitedSandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # prompts are plain text, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters[_LOOP_FILTER] = _counted_loop
    return env


def _count_loops(ast: nodes.Template) -> None:
    """Wrap every ``{% for %}`` iterable in the counting filter (in place, before compiling)."""
    for loop in ast.find_all(nodes.For):
        loop.iter = nodes.Filter(loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.iter.lineno)


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
        limits: What one render may cost (default :class:`RenderLimits`).

    Raises:
        PromptError: the template has a syntax error (naming the file and line).
    """

    def __init__(
        self,
        source: str,
        *,
        path: str | None,
        first_line: int | None,
        label: str,
        limits: RenderLimits | None = None,
    ) -> None:
        self.source = source
        self.path = path
        self.first_line = first_line
        self.label = label
        self.limits = limits or RenderLimits()
        env = _environment()
        try:
            self._ast = env.parse(source, filename=TEMPLATE_FILENAME)
            _count_loops(self._ast)
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
            PromptError: an undefined variable, a refused (unsafe) operation, a render limit
                exceeded (:class:`RenderLimits`) or any other rendering failure, naming the file and
                the line where Jinja reports one.
        """
        token = _budget.set(_Budget(self.limits))
        try:
            return self._render(dict(variables))
        except PromptError:
            raise
        except _LimitExceeded as exc:
            raise self._error(f"render limit exceeded: {exc}", exc) from None
        except jinja2.exceptions.SecurityError as exc:
            raise self._error(f"refused by the sandbox: {exc}", exc) from None
        except jinja2.UndefinedError as exc:
            raise self._error(f"undefined value: {exc.message}", exc) from None
        except jinja2.TemplateError as exc:
            raise self._error(f"template error: {exc}", exc) from None
        except Exception as exc:  # a filter or test failing on a value: still the template's fault
            raise self._error(f"rendering failed: {type(exc).__name__}: {exc}", exc) from None
        finally:
            _budget.reset(token)

    def _render(self, variables: dict[str, Any]) -> str:
        """Stream the output, stopping at the size limit (naming the line being rendered)."""
        limit = self.limits.max_output_chars
        parts: list[str] = []
        append = parts.append
        size = 0
        stream = cast("Generator[str, None, None]", self._template.generate(variables))
        try:
            for part in stream:  # no clock check here: output without loops or calls is linear
                size += len(part)
                if size > limit:
                    line = _suspended_line(stream, self._template)
                    raise PromptError(
                        f"{self.label}: render limit exceeded: output over {limit:,} characters "
                        "(render limit max_output_chars)",
                        path=self.path,
                        line=self._file_line(line),
                    )
                append(part)
        finally:
            stream.close()
        return "".join(parts).strip()

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


def _suspended_line(stream: Iterator[str], template: jinja2.Template) -> int | None:
    """The template line a suspended render generator stopped at (the innermost template frame)."""
    line = None
    gen: Any = stream
    while gen is not None:
        frame = getattr(gen, "gi_frame", None)
        if frame is not None and frame.f_code.co_filename == TEMPLATE_FILENAME:
            line = template.get_corresponding_lineno(frame.f_lineno)
        gen = getattr(gen, "gi_yieldfrom", None)
    return line


def _template_line(tb: TracebackType | None) -> int | None:
    """The last template line in a traceback (Jinja rewrites frames to point at template lines)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
