"""Run any guardrails-ai ``Guard`` or validator as an aiapp guard: the only module importing ``guardrails``.

Install with ``pip install 'aiapp[guardrails]'``. Hub validators install from PyPI as
``guardrails-ai-<name>`` and import as ``guardrails_ai.<name>``::

    from guardrails_ai.regex_match import RegexMatch          # any Validator, or a whole Guard
    from aiapp.guardrails import GuardrailsAIGuard, OutputGuards
    guards = OutputGuards([GuardrailsAIGuard(RegexMatch(regex=r"^[A-Z]"), action="block")])

Or in ``configs/aiapp.yaml``: ``{type: guardrails_ai, validator: "guardrails_ai.regex_match:RegexMatch",
args: {regex: "^[A-Z]"}}``.

Before ``guardrails`` is first imported, :func:`prepare_guardrails_environment`:

* writes ``$HOME/.guardrailsrc`` with ``enable_metrics=false`` and ``use_remote_inferencing=false``
  **only if the file does not exist** (guardrails-ai reads it at import and at every ``Guard``
  construction; setting metrics off in code alone did not stop its telemetry). An existing file is
  left as it is, and its metrics and remote-inference settings are overridden in memory;
* adds ``$AIAPP_HOME/nltk_data`` (which gets a ``tokenizers/punkt/`` folder) to ``NLTK_DATA`` when no
  folder there has ``tokenizers/punkt``, since guardrails-ai otherwise calls ``nltk.download`` at
  import. (nltk 3.9+ tokenizes with ``punkt_tab``; the empty ``punkt`` folder only satisfies that check.)

Failures are surfaced, never swallowed: a failing validator is a failed verdict whatever its own
``on_fail`` (guardrails-ai reports ``fix``/``reask`` outcomes as passed), and a validator that raises,
or an outcome carrying an error, raises :class:`~aiapp.errors.GuardrailError` (fail closed).
Each wrapped guard is used under a lock: guardrails-ai keeps per-guard history and is not safe under
parallel async use.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiapp.errors import ConfigError, GuardrailError
from aiapp.guardrails._base import Guard, register_guard
from aiapp.guardrails._verdict import Action, GuardContext, Outcome

__all__ = ["GuardrailsAIGuard", "prepare_guardrails_environment"]

_RC = "enable_metrics=false\nuse_remote_inferencing=false\n"
_prepared = threading.Lock()


def prepare_guardrails_environment(*, home: Path | None = None, nltk_dir: Path | None = None) -> None:
    """Keep guardrails-ai offline and quiet: see the module docstring. Safe to call repeatedly.

    Args:
        home: The directory holding ``.guardrailsrc`` (default: ``$HOME``).
        nltk_dir: The folder ``NLTK_DATA`` points at (default: ``$AIAPP_HOME/nltk_data``).
    """
    with _prepared:
        rc = (home or Path.home()) / ".guardrailsrc"
        if not rc.exists():
            rc.parent.mkdir(parents=True, exist_ok=True)
            rc.write_text(_RC, encoding="utf-8")
        if nltk_dir is None:
            from aiapp.config import default_home

            nltk_dir = default_home() / "nltk_data"
        entries = [e for e in os.environ.get("NLTK_DATA", "").split(os.pathsep) if e]
        if not any((Path(e) / "tokenizers" / "punkt").exists() for e in entries):
            (nltk_dir / "tokenizers" / "punkt").mkdir(parents=True, exist_ok=True)
            os.environ["NLTK_DATA"] = os.pathsep.join([*entries, str(nltk_dir)])
            nltk = sys.modules.get("nltk")  # already imported: its search path is fixed, so extend it
            if nltk is not None and str(nltk_dir) not in nltk.data.path:
                nltk.data.path.append(str(nltk_dir))
        _telemetry_off()


def _telemetry_off() -> None:
    """Override metrics and remote inference in guardrails-ai's loaded settings (when imported)."""
    settings_module = sys.modules.get("guardrails.settings")
    if settings_module is not None:
        rc = settings_module.settings.rc
        rc.enable_metrics = False
        rc.use_remote_inferencing = False
    telemetry = sys.modules.get("guardrails.utils.hub_telemetry_utils")
    if telemetry is not None and telemetry.HubTelemetry._instance is not None:
        telemetry.HubTelemetry._instance._enabled = False


def _import_guardrails() -> Any:
    prepare_guardrails_environment()
    try:
        import guardrails
    except ImportError as exc:
        raise ConfigError(
            "the guardrails-ai adapter needs the extra: pip install 'aiapp[guardrails]'"
        ) from exc
    _telemetry_off()
    return guardrails


@register_guard("guardrails_ai")
class GuardrailsAIGuard(Guard):
    """A guardrails-ai ``Guard``, ``Validator`` or list of validators, run as an aiapp guard.

    Args:
        target: A ``guardrails.Guard``, a ``Validator`` instance, or a list of validators (put in
            one guard with a single ``use`` call).
        action: What aiapp does when it fails: ``block`` (default), ``fix`` (use the validators'
            fixed value), ``fallback``, ``flag``, ``reask``.
        name: Name shown in verdicts (default: ``guardrails_ai:<validator names>``).
        validator: From configuration: ``"module:Class"`` of a validator to build (instead of ``target``).
        args: From configuration: keyword arguments for ``validator``.
    """

    kind = "guardrails_ai"
    default_action = "block"
    actions = frozenset({"block", "fix", "fallback", "flag", "reask"})
    heavy = True  # validators may run models; async callers use a worker thread

    def __init__(
        self,
        target: Any = None,
        *,
        action: Action | None = None,
        name: str | None = None,
        validator: str | None = None,
        args: Mapping[str, Any] | None = None,
    ) -> None:
        guardrails = _import_guardrails()
        from guardrails.validator_base import Validator

        if target is None and validator is not None:
            target = _build_validator(validator, dict(args or {}))
        if isinstance(target, guardrails.Guard):
            guard = target
        elif isinstance(target, Validator):
            guard = guardrails.Guard().use(target)
        elif isinstance(target, Sequence) and target and all(isinstance(v, Validator) for v in target):
            guard = guardrails.Guard().use(*target)
        else:
            raise ConfigError(
                "GuardrailsAIGuard needs a guardrails Guard, a Validator or a list of validators "
                f"(got {type(target).__name__})"
            )
        guard.configure(allow_metrics_collection=False)
        _telemetry_off()
        names = [getattr(v, "rail_alias", type(v).__name__) for v in getattr(guard, "_validators", [])]
        super().__init__(action=action, name=name or f"guardrails_ai:{'+'.join(names) or guard.name}")
        self.guard = guard
        self._lock = threading.Lock()

    def evaluate(self, text: str, context: GuardContext) -> Outcome:
        """Validate ``text``; any failing validator fails the verdict."""
        from guardrails.errors import ValidationError

        with self._lock:
            try:
                outcome = self.guard.validate(text)
            except ValidationError as exc:  # a validator with on_fail="exception"
                return Outcome(passed=False, reason=str(exc))
            except Exception as exc:
                raise GuardrailError(
                    guard=self.name,
                    reason=f"guardrails-ai raised {type(exc).__name__}: {exc}",
                    stage=context.stage,
                    route=context.route,
                ) from exc
        if outcome.error:
            raise GuardrailError(
                guard=self.name,
                reason=f"guardrails-ai error: {outcome.error}",
                stage=context.stage,
                route=context.route,
            )
        failed = [
            s
            for s in (outcome.validation_summaries or [])
            if getattr(s.validator_status, "value", s.validator_status) == "fail"
        ]
        if outcome.validation_passed and not failed and outcome.reask is None:
            return Outcome(passed=True)
        reason = "; ".join(f"{s.validator_name}: {s.failure_reason}" for s in failed) or "validation failed"
        validated = outcome.validated_output
        fixed = validated if isinstance(validated, str) and validated != text else None
        return Outcome(passed=False, reason=reason, fixed=fixed)


def _build_validator(spec: str, args: dict[str, Any]) -> Any:
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise ConfigError(
            f"validator {spec!r} must be written module:Class (e.g. guardrails_ai.regex_match:RegexMatch)"
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"cannot import validator {spec!r}: {exc} (pip install guardrails-ai-<name>?)"
        ) from exc
    return cls(**args)
