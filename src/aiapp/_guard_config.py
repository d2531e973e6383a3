"""Configuration of a route's guards (``guards:`` under a route in ``configs/aiapp.yaml``).

Kept beside :mod:`aiapp.config` (the leftmost layer) so the config can be validated without
importing :mod:`aiapp.guardrails`. Each entry names a registered guard type and its options::

    routes:
      support:
        deployments: [{model: local/extractive}]
        guards:
          input:
            - injection                          # a bare name: the guard with its defaults
            - {type: pii, action: redact, reversible: true}
            - {type: limits, max_chars: 8000}
          output:
            - {type: secrets, action: block}
            - {type: grounding, action: flag}
          fallback: "Sorry, I can't help with that request."

Guard types and their options are checked when the route is built: an unknown type or option is
a :class:`~aiapp.errors.ConfigError` naming the route and the entry.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Action = Literal["block", "redact", "fix", "reask", "fallback", "flag"]


class GuardSpec(BaseModel):
    """One guard in a route's stack.

    Attributes:
        type: The registered guard type (``injection``, ``pii``, ``secrets``, ``limits``,
            ``banlist``, ``topics``, ``json``, ``grounding``, or one added with
            :func:`aiapp.guardrails.register_guard`).
        action: What to do when it fails; ``None`` keeps the guard's default.
        name: The name shown in verdicts and errors (default: the type).
        options: Every other key, passed to the guard's factory.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(min_length=1)
    action: Action | None = None
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"type": value}
        return value

    @property
    def options(self) -> dict[str, Any]:
        """The guard-specific options (every key but ``type``, ``action`` and ``name``)."""
        return dict(self.model_extra or {})


class RouteGuards(BaseModel):
    """Input and output guards of one route.

    Attributes:
        input: Guards run on the last user message before the call, in order.
        output: Guards run on the reply (and on streams, over a buffered window) in order.
        fallback: The answer returned when a guard with ``action: fallback`` fails.
        max_reasks: How many times an output guard with ``action: reask`` may re-ask the model.
        window_chars: On streams, text held back until output guards have seen this much after it,
            so a secret split across chunks is caught before any of it is released.
        retrieved: What a blocking input guard (injection) does to a retrieved document passed
            with the call (``RAGApp`` passes its hits): ``block`` the call, naming the document's
            source and chunk, or ``drop`` the document and answer from the rest.
    """

    model_config = ConfigDict(extra="forbid")

    input: list[GuardSpec] = Field(default_factory=list)
    output: list[GuardSpec] = Field(default_factory=list)
    fallback: str = "Sorry, I can't help with that request."
    max_reasks: int = Field(default=1, ge=0, le=5)
    window_chars: int = Field(default=256, ge=16, le=65536)
    retrieved: Literal["block", "drop"] = "block"
