"""Agreement statistics: Cohen's κ (unweighted, linear, quadratic) and Krippendorff's α.

Written by hand in numpy on purpose: scikit-learn (``cohen_kappa_score``) is a heavy dependency
for one function and has no α, and the small α packages on PyPI are thinly maintained; both
statistics are a few lines over a confusion or coincidence matrix. The tests check them against
textbook examples (Krippendorff's own worked example, Cohen's 2×2 example).

An agreement that cannot be computed (a single category, fewer than two paired values) raises
:class:`aiapp.errors.InputError`; :class:`Agreement` turns that into a value of ``None`` with a
reason, so nothing downstream sees NaN.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from aiapp.errors import InputError

Weights = Literal["linear", "quadratic"] | None
Level = Literal["nominal", "ordinal", "interval", "ratio"]


@dataclass(frozen=True)
class Agreement:
    """An agreement statistic with its sample size, or the reason it could not be computed.

    Attributes:
        method: ``cohen_kappa``, ``cohen_kappa_linear``, ``cohen_kappa_quadratic``, ``mean_pairwise_kappa_*``
            or ``krippendorff_alpha_<level>``.
        value: The statistic (1 = perfect agreement, 0 = chance), or ``None``.
        items: Items (cases) that entered the computation.
        raters: Raters (or rater + judge) involved.
        reason: Why ``value`` is ``None``, or a note.
    """

    method: str
    value: float | None
    items: int
    raters: int
    reason: str = ""

    def at_least(self, minimum: float) -> bool:
        """Whether the agreement was measured and reaches ``minimum``."""
        return self.value is not None and self.value >= minimum


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def cohen_kappa(
    a: Sequence[Hashable],
    b: Sequence[Hashable],
    *,
    weights: Weights = None,
    categories: Sequence[Hashable] | None = None,
) -> float:
    """Cohen's κ between two raters' labels on the same items.

    Args:
        a: Rater A's labels, one per item.
        b: Rater B's labels, same items in the same order.
        weights: ``None`` (unweighted), ``linear`` or ``quadratic`` (for ordered labels).
        categories: The ordered label set; default: the sorted union of both raters' labels.

    Raises:
        InputError: different lengths, no items, an unknown label, or κ undefined (one category).
    """
    if len(a) != len(b):
        raise InputError(f"cohen_kappa needs paired labels: {len(a)} vs {len(b)}")
    if not a:
        raise InputError("cohen_kappa needs at least one item")
    cats = list(categories) if categories is not None else sorted(set(a) | set(b))  # type: ignore[type-var]
    index = {c: i for i, c in enumerate(cats)}
    k = len(cats)
    observed = np.zeros((k, k))
    for x, y in zip(a, b, strict=True):
        if x not in index or y not in index:
            raise InputError(f"label {x if x not in index else y!r} is not among the categories {cats}")
        observed[index[x], index[y]] += 1
    observed /= observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    i, j = np.indices((k, k))
    if weights is None:
        w = (i != j).astype(float)
    elif weights == "linear":
        w = np.abs(i - j) / max(k - 1, 1)
    elif weights == "quadratic":
        w = ((i - j) / max(k - 1, 1)) ** 2
    else:
        raise InputError(f"weights must be None, 'linear' or 'quadratic', not {weights!r}")
    disagreement_expected = float((w * expected).sum())
    if disagreement_expected == 0:
        raise InputError("cohen_kappa is undefined when both raters use a single, identical category")
    return 1.0 - float((w * observed).sum()) / disagreement_expected


def krippendorff_alpha(data: Sequence[Sequence[float | None]], *, level: Level = "ordinal") -> float:
    """Krippendorff's α for any number of raters, with missing values.

    Args:
        data: A raters × items matrix (rows are raters); ``None`` or NaN where a rater did not rate.
        level: Measurement level: ``nominal``, ``ordinal``, ``interval`` or ``ratio``.

    Raises:
        InputError: no pairable values, or α undefined (every value the same).
    """
    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise InputError(f"level must be nominal, ordinal, interval or ratio, not {level!r}")
    if not data:
        raise InputError("krippendorff_alpha needs at least one rater")
    width = len(data[0])
    if any(len(row) != width for row in data):
        raise InputError("krippendorff_alpha needs a rectangular raters × items matrix")
    units = [[float(row[u]) for row in data if not _is_missing(row[u])] for u in range(width)]  # type: ignore[arg-type]
    units = [values for values in units if len(values) >= 2]  # only pairable units count
    if not units:
        raise InputError("krippendorff_alpha needs at least one item rated by two or more raters")
    values = sorted({v for unit in units for v in unit})
    index = {v: i for i, v in enumerate(values)}
    coincidence = np.zeros((len(values), len(values)))
    for unit in units:
        counts = np.zeros(len(values))
        for v in unit:
            counts[index[v]] += 1
        # Pairs of values within the unit, each pair weighted 1 / (m_u - 1).
        coincidence += (np.outer(counts, counts) - np.diag(counts)) / (len(unit) - 1)
    n_c = coincidence.sum(axis=1)
    n = float(n_c.sum())
    delta = _delta(np.asarray(values), n_c, level)
    observed = float((coincidence * delta).sum()) / n
    expected = float((np.outer(n_c, n_c) * delta).sum()) / (n * (n - 1))
    if expected == 0:
        raise InputError("krippendorff_alpha is undefined when every rating has the same value")
    return 1.0 - observed / expected


def _delta(
    values: npt.NDArray[np.float64], n_c: npt.NDArray[np.float64], level: Level
) -> npt.NDArray[np.float64]:
    """The squared difference function δ²(c, k) of a measurement level."""
    c, k = np.meshgrid(values, values, indexing="ij")
    if level == "nominal":
        out: npt.NDArray[np.float64] = (c != k).astype(float)
        return out
    if level == "interval":
        squared: npt.NDArray[np.float64] = (c - k) ** 2
        return squared
    if level == "ratio":
        total = c + k
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(total == 0, 0.0, (c - k) / np.where(total == 0, 1.0, total))
        ratio_squared: npt.NDArray[np.float64] = ratio**2
        return ratio_squared
    # ordinal: (sum of n_g for g between c and k inclusive, minus half of n_c and n_k) squared.
    cumulative = np.concatenate([[0.0], np.cumsum(n_c)])
    i, j = np.indices((len(values), len(values)))
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    between = cumulative[hi + 1] - cumulative[lo]
    ordinal: npt.NDArray[np.float64] = (between - (n_c[i] + n_c[j]) / 2) ** 2
    return ordinal


def measure(
    matrix: Sequence[Sequence[float | None]],
    *,
    method: Literal["alpha", "kappa"] = "alpha",
    level: Level = "ordinal",
    weights: Weights = "quadratic",
) -> Agreement:
    """Agreement of a raters × items matrix as an :class:`Agreement` (never raises, never NaN).

    ``alpha`` uses every rater and tolerates missing values. ``kappa`` uses the items both raters
    rated; with more than two raters it is the mean pairwise κ (Light's κ).
    """
    raters = len(matrix)
    items = sum(
        1 for u in range(len(matrix[0]) if matrix else 0) if sum(not _is_missing(r[u]) for r in matrix) >= 2
    )
    try:
        if method == "alpha":
            return Agreement(
                f"krippendorff_alpha_{level}", krippendorff_alpha(matrix, level=level), items, raters
            )
        if method != "kappa":
            raise InputError(f"method must be alpha or kappa, not {method!r}")
        if raters < 2:
            raise InputError("kappa needs two raters")
        kappas = []
        for x in range(raters):
            for y in range(x + 1, raters):
                pairs = [
                    (a, b)
                    for a, b in zip(matrix[x], matrix[y], strict=True)
                    if not _is_missing(a) and not _is_missing(b)
                ]
                if pairs:
                    cats = sorted({v for pair in pairs for v in pair if v is not None})
                    kappas.append(
                        cohen_kappa(
                            [p[0] for p in pairs], [p[1] for p in pairs], weights=weights, categories=cats
                        )
                    )
        if not kappas:
            raise InputError("no two raters rated the same item")
        name = "cohen_kappa" + (f"_{weights}" if weights else "")
        if raters > 2:
            name = "mean_pairwise_" + name
        return Agreement(name, float(np.mean(kappas)), items, raters)
    except InputError as exc:
        name = f"krippendorff_alpha_{level}" if method == "alpha" else "cohen_kappa"
        return Agreement(name, None, items, raters, reason=str(exc))
