"""The guard seam: a :class:`Guard` judges one text; a registry builds guards from configuration."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import ValidationError

from aiapp._guard_config import GuardSpec
from aiapp.errors import ConfigError
from aiapp.guardrails._verdict import Action, GuardContext, Outcome, Stage

__all__ = ["Guard", "GuardFactory", "build_guard", "guard_types", "register_guard"]


class Guard:
    """Base class for guards. Subclasses implement :meth:`evaluate`.

    A guard only judges; the stack it sits in applies its ``action`` when it fails. Guards must be
    safe to call from many threads and tasks at once: keep no per-call state on ``self`` (or lock it).

    Class attributes:
        kind: The registered type name (``pii``, ``injection`` ...).
        default_action: The action used when none is configured.
        actions: The actions this guard supports (``redact`` needs findings, ``fix`` a fixed text).
        stages: Where it may run: ``input``, ``output`` or both.
        windowed: It judges spans, so it can check a partial stream window before text is released.
        heavy: It is CPU-bound (embeddings), so async callers run it in a worker thread.

    Args:
        action: What the stack does when this guard fails (default: ``default_action``).
        name: The name shown in verdicts and errors (default: ``kind``).
    """

    kind: ClassVar[str] = "guard"
    default_action: ClassVar[Action] = "block"
    actions: ClassVar[frozenset[Action]] = frozenset({"block", "fallback", "flag", "reask"})
    stages: ClassVar[frozenset[Stage]] = frozenset({"input", "output"})
    windowed: bool = False
    heavy: bool = False

    def __init__(self, *, action: Action | None = None, name: str | None = None) -> None:
        self.action: Action = action or self.default_action
        if self.action not in self.actions:
            known = ", ".join(sorted(self.actions))
            raise ConfigError(f"guard {self.kind!r} cannot {self.action!r} (it supports: {known})")
        self.name = name or self.kind

    def evaluate(self, text: str, context: GuardContext) -> Outcome:
        """Judge ``text``. Must not raise for ordinary input; raise only when the guard itself is broken."""
        raise NotImplementedError

    def check(self, text: str, *, stage: Stage = "input", **context: Any) -> Outcome:
        """Judge ``text`` directly (outside any stack): a convenience for tests and notebooks."""
        return self.evaluate(text, GuardContext(stage=stage, **context))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} action={self.action}>"


GuardFactory = Callable[..., Guard]
_F = TypeVar("_F", bound=GuardFactory)
_REGISTRY: dict[str, GuardFactory] = {}


def register_guard(kind: str) -> Callable[[_F], _F]:
    """Decorator: make a guard class (or factory) available to configuration as ``type: kind``.

    Example:
        >>> @register_guard("no_shouting")
        ... class NoShouting(Guard):
        ...     kind = "no_shouting"
        ...     def evaluate(self, text, context):
        ...         return Outcome(passed=not text.isupper(), reason="all caps")
    """

    def decorate(factory: _F) -> _F:
        _REGISTRY[kind] = factory
        return factory

    return decorate


def guard_types() -> list[str]:
    """Registered guard types."""
    return sorted(_REGISTRY)


def build_guard(spec: GuardSpec | str | Mapping[str, Any], *, where: str | None = None) -> Guard:
    """Build a guard from a config entry (``"pii"`` or ``{"type": "pii", "action": "redact", ...}``).

    Raises:
        ConfigError: for an unknown type, an unknown option or an unsupported action (``where``
            names the config field).
    """
    try:
        parsed = spec if isinstance(spec, GuardSpec) else GuardSpec.model_validate(spec)
    except ValidationError as exc:
        raise ConfigError(f"invalid guard entry: {exc.errors()[0]['msg']}", field=where) from exc
    factory = _REGISTRY.get(parsed.type)
    if factory is None:
        known = ", ".join(guard_types())
        raise ConfigError(f"unknown guard type {parsed.type!r} (known: {known})", field=where)
    kwargs = parsed.options
    if parsed.action is not None:
        kwargs["action"] = parsed.action
    if parsed.name is not None:
        kwargs["name"] = parsed.name
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"guard {parsed.type!r}: {exc}", field=where) from exc
    except ConfigError as exc:
        raise ConfigError(str(exc), field=where) from exc
