"""``aiapp.feedback``: a user's rating of a traced answer, stored on its trace and exported as a score.

It sits in the gateway layer (not with the eval harness, which also scores traces) so that an app
recording thumbs up/down never imports the evals package.
"""

from __future__ import annotations

from aiapp.gateway._gateway import Gateway
from aiapp.tracing import FeedbackRecord


def feedback(
    trace_id: str,
    score: str | float | int,
    *,
    comment: str | None = None,
    user: str | None = None,
    gateway: Gateway | None = None,
) -> FeedbackRecord:
    """Store a user's feedback on a traced answer; it is exported like any score.

    Args:
        trace_id: The answer's trace id (``answer.trace_id``; a unique prefix is enough).
        score: ``+1``/``-1`` (thumbs) or a rating in ``[0, 1]``.
        comment: What the user said; kept as ``tracing.capture`` allows (redacted under
            ``redacted``, dropped under ``metadata``).
        user: Who gave it.
        gateway: The gateway whose trace store and exporters to use (default: one built from the
            config, closed afterwards).

    Returns:
        What was stored.

    Raises:
        InputError: an unknown trace id or a score that is neither ±1 nor in ``[0, 1]``.
        ConfigError: tracing is disabled.

    Example:
        >>> answer = app.ask("How do I rotate my API key?")
        >>> aiapp.feedback(answer.trace_id, +1, comment="clear and correct", user="u42")
    """
    if gateway is not None:
        return gateway.feedback(trace_id, score, comment, user=user)
    with Gateway.from_config() as owned:
        stored = owned.feedback(trace_id, score, comment, user=user)
        owned.tracer.flush_exports()
        return stored
