"""Guards: input and output checks with actions (block, redact, fix, reask, fallback, flag).

Guards judge one text each and return an :class:`Outcome`; a stack (:class:`InputGuards`,
:class:`OutputGuards`) runs them in order, applies each failing guard's action and reports a
:class:`Verdict` per guard. The gateway runs a route's stacks (``guards:`` under the route in
``configs/aiapp.yaml``) as its outermost middleware layer, records every verdict in the trace and
raises :class:`~aiapp.errors.GuardrailError` on a block. Apps can call stacks directly as hooks::

    from aiapp.guardrails import check_input, check_output
    report = check_input(user_text)          # injection, secrets, PII, limits; raises on a block
    reply = report.restore(model_reply)      # reversible PII placeholders mapped back

Built-in guard types: ``injection`` (signature rules + a classifier trained on deepset's train
split), ``pii`` (email, phone, card, IBAN, US SSN, IP), ``secrets`` (API keys, tokens, entropy),
``limits``, ``banlist``, ``topics``, ``json`` (JSON and JSON-schema validity, with repair),
``grounding`` (answer sentences unsupported by the retrieved context), ``guardrails_ai`` (any
guardrails-ai Guard or validator). Add your own with :func:`register_guard`.
"""

from aiapp.guardrails._adapter import GuardrailsAIGuard, prepare_guardrails_environment
from aiapp.guardrails._base import Guard, build_guard, guard_types, register_guard
from aiapp.guardrails._classifier import InjectionClassifier
from aiapp.guardrails._injection import InjectionGuard, match_signature
from aiapp.guardrails._layer import GuardedModel, grounding_documents
from aiapp.guardrails._limits import BanListGuard, LimitsGuard, TopicsGuard
from aiapp.guardrails._output import GroundingGuard, JSONGuard
from aiapp.guardrails._pii import PII_TYPES, PIIGuard, find_pii, iban_valid, luhn_valid
from aiapp.guardrails._redact import RedactionMap
from aiapp.guardrails._secrets import SecretsGuard, find_secrets
from aiapp.guardrails._stack import (
    GuardReport,
    GuardStack,
    InputGuards,
    OutputGuards,
    check_input,
    check_output,
    default_input_guards,
    default_output_guards,
)
from aiapp.guardrails._stream import StreamGate
from aiapp.guardrails._verdict import Finding, GuardContext, Outcome, Redaction, Verdict

__all__ = [
    "PII_TYPES",
    "BanListGuard",
    "Finding",
    "GroundingGuard",
    "Guard",
    "GuardContext",
    "GuardReport",
    "GuardStack",
    "GuardedModel",
    "GuardrailsAIGuard",
    "InjectionClassifier",
    "InjectionGuard",
    "InputGuards",
    "JSONGuard",
    "LimitsGuard",
    "Outcome",
    "OutputGuards",
    "PIIGuard",
    "Redaction",
    "RedactionMap",
    "SecretsGuard",
    "StreamGate",
    "TopicsGuard",
    "Verdict",
    "build_guard",
    "check_input",
    "check_output",
    "default_input_guards",
    "default_output_guards",
    "find_pii",
    "find_secrets",
    "grounding_documents",
    "guard_types",
    "iban_valid",
    "luhn_valid",
    "match_signature",
    "prepare_guardrails_environment",
    "register_guard",
]
