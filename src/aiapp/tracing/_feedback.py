"""Feedback is a score on a trace: stored with the trace and exported like any other score.

:func:`record_feedback` is the one place feedback is written, whoever gives it (``aiapp.feedback``,
``aiapp traces feedback``, ``POST /v1/feedback`` on ``aiapp serve``): it resolves the trace id
(a unique prefix is enough), refuses an unknown trace, applies the tracer's content-capture policy
to the comment (the same policy spans get: dropped under ``metadata``, redacted under
``redacted``), stores the row and hands it to the exporters as a ``user_feedback`` score.

Scores are thumbs (``+1``/``-1``) or a rating in ``[0, 1]``; :func:`parse_feedback_score` accepts
either, as numbers or as the strings a command line or a form sends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiapp.errors import ConfigError, InputError
from aiapp.tracing._tracer import Tracer

#: The score name feedback is stored and exported under.
FEEDBACK_SCORE_NAME = "user_feedback"


@dataclass(frozen=True)
class FeedbackRecord:
    """One stored piece of feedback.

    Attributes:
        trace_id: The full id of the trace it is about.
        score: The score stored (``1.0``/``-1.0`` for thumbs, else in ``[0, 1]``).
        comment: The comment as stored (after the capture policy), if any.
        user: Who gave it.
        source: ``user`` for end users; ``reviewer`` ... for others.
    """

    trace_id: str
    score: float
    comment: str | None
    user: str | None
    source: str


def parse_feedback_score(value: str | float | int) -> float:
    """A feedback score from ``+1``/``-1`` (thumbs) or a rating in ``[0, 1]``.

    Raises:
        InputError: anything else (``2``, ``-0.5``, ``nan``, ``"good"``), naming the value.
    """
    if isinstance(value, bool):
        raise InputError(f"feedback score must be +1, -1 or a number in [0, 1], got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if text in ("+", "up", "👍"):
            return 1.0
        if text in ("-", "down", "👎"):
            return -1.0
        try:
            number = float(text)
        except ValueError:
            raise InputError(f"feedback score must be +1, -1 or a number in [0, 1], got {value!r}") from None
    else:
        number = float(value)
    if math.isfinite(number) and (number in (1.0, -1.0) or 0.0 <= number <= 1.0):
        return number
    raise InputError(f"feedback score must be +1, -1 or a number in [0, 1], got {value!r}")


def capture_text(tracer: Tracer, text: str | None) -> str | None:
    """``text`` as the tracer's capture policy lets the store keep it (``None`` when it may not)."""
    if text is None or tracer.capture in ("none", "metadata"):
        return None
    if tracer.capture == "redacted":
        return tracer.redactor(text) if tracer.redactor is not None else None
    return text


def record_feedback(
    tracer: Tracer,
    trace_id: str,
    score: str | float | int,
    *,
    comment: str | None = None,
    user: str | None = None,
    source: str = "user",
) -> FeedbackRecord:
    """Store feedback on a stored trace and export it as a ``user_feedback`` score.

    Args:
        tracer: The tracer whose store holds the trace and whose exporters get the score.
        trace_id: The trace (a unique prefix of 4+ characters is enough).
        score: ``+1``/``-1`` or a rating in ``[0, 1]`` (see :func:`parse_feedback_score`).
        comment: Free text; kept as the capture policy allows.
        user: Who gave it (an app's user id, a virtual key's name).
        source: ``user`` (default) or another origin (``reviewer``).

    Raises:
        InputError: an unknown trace id or a bad score.
        ConfigError: tracing is disabled (no store to keep feedback in).
    """
    value = parse_feedback_score(score)
    store = tracer.store
    if store is None:
        raise ConfigError("tracing is disabled, so feedback cannot be stored", field="tracing.enabled")
    if not trace_id or not trace_id.strip():
        raise InputError("feedback needs a trace id")
    full = store.resolve(trace_id.strip())
    if full is None:
        raise InputError(
            f"no trace with id {trace_id!r} in {store.path}: feedback must name a stored trace "
            "(see `aiapp traces`)"
        )
    kept = capture_text(tracer, comment)
    store.add_feedback(full, value, kept, source=source, user=user)
    tracer.export_score(full, FEEDBACK_SCORE_NAME, value, comment=comment, source=source)
    return FeedbackRecord(trace_id=full, score=value, comment=kept, user=user, source=source)
