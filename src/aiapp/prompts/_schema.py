"""JSON Schema checks for prompt outputs: the only module of aiapp that imports ``jsonschema``.

``jsonschema`` is imported on first use, so loading prompts without output schemas never pays for it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["schema_errors", "schema_problem"]


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON Schema (draft 2020-12), or ``None`` when it is."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return f"{exc.message}" + (f" (at {where})" if where else "")
    return None


def schema_errors(instance: Any, schema: dict[str, Any], *, limit: int = 5) -> list[str]:
    """Every way ``instance`` fails ``schema`` (at most ``limit``), each as ``path: message``.

    An empty list means the instance is valid.
    """
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    out = []
    for error in errors[:limit]:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        out.append(f"{where}: {error.message}")
    return out
