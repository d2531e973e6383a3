"""A safe calculator: arithmetic parsed with :mod:`ast` and evaluated node by node — never ``eval``.

Allowed: numbers, ``+ - * / // % **``, parentheses, unary ``+``/``-``, the constants ``pi``, ``e``,
``tau`` and the functions ``abs round min max sqrt exp log log10 log2 sin cos tan asin acos atan
floor ceil``. Names, attributes, calls of anything else, comprehensions and strings are refused.
Sizes are bounded (expression length, exponents, integer digits), so no input can hang the process.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from aiapp.agents._tool import tool
from aiapp.errors import ToolError

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 1000
MAX_INT_DIGITS = 400

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": lambda x, n=0: round(x, _digits(n)),
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "floor": math.floor,
    "ceil": math.ceil,
}


def evaluate(expression: str) -> int | float:
    """Evaluate an arithmetic expression safely.

    Args:
        expression: E.g. ``"3 * (2 + 5.5) ** 2"`` or ``"sqrt(16) + log(e)"``.

    Raises:
        ToolError: for anything but arithmetic, oversized inputs or math errors (division by zero).
    """
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text:
        raise ToolError("the expression is empty", tool="calculator")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters", tool="calculator")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not a valid arithmetic expression: {exc.msg}", tool="calculator") from exc
    try:
        value = _eval(tree.body)
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as exc:
        raise ToolError(f"cannot compute {expression!r}: {exc}", tool="calculator") from exc
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError("the expression does not evaluate to a number", tool="calculator")
    return value


def _eval(node: ast.AST) -> Any:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponents above {MAX_EXPONENT} are not allowed")
        result = _BINARY[type(node.op)](left, right)
        return _bounded(result)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
        and len(node.args) <= 8
    ):
        return _bounded(_FUNCTIONS[node.func.id](*(_eval(arg) for arg in node.args)))
    if isinstance(node, ast.Name):
        raise ToolError(f"unknown name {node.id!r}", tool="calculator")
    raise ToolError(f"{type(node).__name__} is not allowed in a calculation", tool="calculator")


def _digits(n: Any) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or abs(n) > 15:
        raise ValueError("round() takes a whole number of digits between -15 and 15")
    return n


def _bounded(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_DIGITS * 3.33:
        raise ValueError(f"the result has more than {MAX_INT_DIGITS} digits")
    if isinstance(value, complex):
        raise ValueError("the result is not a real number")
    return value


@tool(name="calculator", read_only=True)
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly (use it instead of doing math in your head).

    Args:
        expression: The expression, e.g. "(17.5 - 2) * 3 / 4" or "sqrt(2) ** 2". Supports + - * / // % **,
            parentheses, pi, e, and abs round min max sqrt exp log log10 log2 sin cos tan floor ceil.
    """
    value = evaluate(expression)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)
