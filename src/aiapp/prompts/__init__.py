"""Versioned prompt files: ``prompts/<name>/v<N>.yaml``, deploy labels, sandboxed rendering.

Prompts are reviewed files in git; ``prompts/labels.yaml`` decides which version serves::

    import aiapp
    prompt = aiapp.prompts.get("support_answer", label="production")   # or "support_answer@v2"
    messages = prompt.render(question="...", context="...")
    reply = gw.complete(messages, model=prompt.model, options=prompt.call_options(),
                        prompt_ref=prompt.prompt_ref())                # the trace records ref + hash

- :class:`Prompt` — one version (pydantic; unknown keys are errors naming file and line).
- :class:`PromptRegistry` — loads a directory, resolves ``name``, ``name@vN``, ``name@label``;
  :meth:`PromptRegistry.check` lists every :class:`Problem` (``aiapp prompts check`` in CI).
- :func:`complete_structured` — JSON output validated against the prompt's schema, one repair attempt.
- :func:`get` — resolve a reference in the configured directory (``prompts.dir``, default ``prompts/``);
  with ``key=user_id`` a label that splits traffic picks the caller's arm (sticky by the key).
- :class:`LabelEntry`, :class:`Assignment`, :class:`RolloutState` — a label's split, canary and
  shadow; the arm a caller got; persisted automatic rollbacks.
- :func:`promote`, :func:`rollback` — the one-line ``labels.yaml`` change (comments kept, atomic).

Templates render in a sandboxed Jinja2 environment with strict undefined variables: a prompt file
is data, and one that reaches for Python internals is refused.
"""

from __future__ import annotations

from pathlib import Path

from aiapp.prompts._edit import LabelChange, promote, rollback
from aiapp.prompts._labels import Arm, LabelEntry, bucket
from aiapp.prompts._model import (
    Example,
    OutputSpec,
    Prompt,
    PromptMessage,
    RenderLimits,
    Variable,
    VariableType,
)
from aiapp.prompts._registry import LABELS_FILE, Assignment, Problem, PromptRegistry, Ref, parse_ref
from aiapp.prompts._state import RolloutState
from aiapp.prompts._structured import StructuredOutput, complete_structured, parse_output

__all__ = [
    "LABELS_FILE",
    "Arm",
    "Assignment",
    "Example",
    "LabelChange",
    "LabelEntry",
    "OutputSpec",
    "Problem",
    "Prompt",
    "PromptMessage",
    "PromptRegistry",
    "Ref",
    "RenderLimits",
    "RolloutState",
    "StructuredOutput",
    "Variable",
    "VariableType",
    "bucket",
    "complete_structured",
    "get",
    "parse_output",
    "parse_ref",
    "promote",
    "rollback",
]


def get(
    ref: str,
    *,
    version: int | None = None,
    label: str | None = None,
    key: str | None = None,
    directory: Path | str | None = None,
) -> Prompt:
    """Resolve a prompt reference in the prompts directory.

    Args:
        ref: ``name``, ``name@vN`` or ``name@label`` (a bare name serves its ``production`` label,
            else its latest version).
        version: A version number instead of ``@vN``.
        label: A label instead of ``@label``.
        key: The caller's key (user or session id): under a label that splits traffic, the
            caller's arm (the same key always gets the same arm), recorded on the open span.
        directory: The prompts directory; default ``prompts.dir`` from configuration (``prompts/``,
            relative to the current directory).

    Raises:
        PromptError: the directory, name, version or label does not exist, or the file is invalid.
    """
    registry = PromptRegistry(directory) if directory is not None else PromptRegistry.from_settings()
    return registry.get(ref, version=version, label=label, key=key)
