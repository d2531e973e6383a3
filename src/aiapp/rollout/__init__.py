"""Safe rollout of prompts and models: sticky A/B splits, shadow traffic, canaries with rollback.

``prompts/labels.yaml`` decides what serves and how traffic is split (see
:mod:`aiapp.prompts._labels`); a route in ``configs/aiapp.yaml`` may split its deployments
(``strategy: weighted``, sticky by the caller's key) and name a ``shadow`` route.

- :class:`Rollout` — the runtime over a gateway: assigns a caller's arm, runs the label's shadow
  after the primary answered, checks canaries and rolls them back (persisted, traced).
- :class:`ShadowRunner` — sampling, ``max_in_flight`` and budget for one shadow: over a limit the
  shadow is dropped, never queued; its failures never reach the primary.
- :class:`ShadowModel` / :func:`shadow_layer` — the gateway layer behind a route's ``shadow:``.
- :func:`arm_metrics`, :func:`find_regression` — a canary's live metrics from the trace store and
  the guard-rail decision.

The offline comparison of arms (``aiapp rollout report``) needs the eval scorers and lives in
:mod:`aiapp.evals` (:func:`aiapp.evals.rollout_report`).
"""

from aiapp.rollout._canary import ArmMetrics, Regression, arm_metrics, find_regression
from aiapp.rollout._layer import ShadowModel, shadow_layer
from aiapp.rollout._rollout import Rollback, Rollout
from aiapp.rollout._shadow import Reservation, ShadowRunner, in_shadow

__all__ = [
    "ArmMetrics",
    "Regression",
    "Reservation",
    "Rollback",
    "Rollout",
    "ShadowModel",
    "ShadowRunner",
    "arm_metrics",
    "find_regression",
    "in_shadow",
    "shadow_layer",
]
