"""JSON Schema checks for prompt outputs: the only module of aiapp that imports ``jsonschema``.

``jsonschema`` is imported on first use, so loading prompts without output schemas never pays for it.

Importing ``jsonschema`` also imports every optional format-checker library that is installed, and
one of them, ``rfc3987_syntax`` (pulled in by ``jsonschema[format-nongpl]``), builds dozens of lark
grammars at import: ~1.3 s, more than the rest of ``aiapp ask`` together. aiapp never asserts
formats (validators are built without a ``format_checker``), so :func:`_jsonschema` imports
``jsonschema`` with a stand-in for that one module whose ``is_valid_syntax`` loads the real module
on its first call: a ``FormatChecker`` that someone else uses still checks ``iri`` formats, only
the grammars are built when first needed rather than at import.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

__all__ = ["schema_errors", "schema_problem"]

_LAZY = "rfc3987_syntax"
_import_lock = threading.Lock()


def _jsonschema() -> Any:
    """The ``jsonschema`` module, imported without building ``rfc3987_syntax``'s grammars."""
    module = sys.modules.get("jsonschema")
    if module is not None:
        return module
    with _import_lock:
        if "jsonschema" in sys.modules or _LAZY in sys.modules or importlib.util.find_spec(_LAZY) is None:
            return importlib.import_module("jsonschema")
        stub = types.ModuleType(_LAZY)

        def is_valid_syntax(*args: Any, **kwargs: Any) -> Any:
            real = sys.modules.get(_LAZY)
            if real is None or real is stub:
                sys.modules.pop(_LAZY, None)
                real = importlib.import_module(_LAZY)
            return real.is_valid_syntax(*args, **kwargs)

        stub.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
        sys.modules[_LAZY] = stub
        try:
            return importlib.import_module("jsonschema")
        finally:
            if sys.modules.get(_LAZY) is stub:
                del sys.modules[_LAZY]


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON Schema (draft 2020-12), or ``None`` when it is."""
    jsonschema = _jsonschema()
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return f"{exc.message}" + (f" (at {where})" if where else "")
    return None


def schema_errors(instance: Any, schema: dict[str, Any], *, limit: int = 5) -> list[str]:
    """Every way ``instance`` fails ``schema`` (at most ``limit``), each as ``path: message``.

    An empty list means the instance is valid.
    """
    validator = _jsonschema().Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    out = []
    for error in errors[:limit]:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        out.append(f"{where}: {error.message}")
    return out
