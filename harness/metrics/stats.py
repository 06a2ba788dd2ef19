"""Statistics of the study: AUROC and the ROC curve (scikit-learn), percentile bootstrap CIs,
paired comparisons on the same resampled images, and Spearman rank correlation with an honest
p-value.

Bootstraps resample *images* with replacement. A statistic that is undefined on a resample (an
AUROC on a resample with one class) drops that resample; the count of usable resamples is
reported with every interval. Spearman p-values are exact (all n! orderings, through
``scipy.stats.permutation_test``) for n <= 9 models and the t approximation above that; with fewer than :data:`MIN_MODELS_TESTABLE` points a
correlation is reported as "not testable" and carries no p-value.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
from scipy import stats as sps
from sklearn import metrics as skm

__all__ = [
    "MIN_MODELS_TESTABLE",
    "IndexStatistic",
    "Interval",
    "RankCorrelation",
    "auroc",
    "bootstrap_indices",
    "bootstrap_interval",
    "bootstrap_mean",
    "paired_difference",
    "paired_mean_difference",
    "roc_curve",
    "smallest_attainable_p",
    "spearman",
]

MIN_MODELS_TESTABLE = 4
_EXACT_MAX_N = 9

IndexStatistic = Callable[[np.ndarray], float]


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    n: int  # images behind the estimate
    n_boot: int  # resamples drawn
    n_valid: int  # resamples on which the statistic was defined
    level: float = 0.95

    def to_json(self) -> dict[str, float | int | None]:
        return {k: _finite_or_none(v) for k, v in dataclasses.asdict(self).items()}


def _finite_or_none(value: float | int) -> float | int | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (``sklearn.metrics.roc_auc_score``; ties count one half); NaN
    when ``labels`` lacks either class."""
    labels = np.asarray(labels, dtype=bool).ravel()
    if labels.all() or not labels.any():
        return float("nan")
    return float(skm.roc_auc_score(labels, np.asarray(scores, dtype=np.float64).ravel()))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct score, from (0, 0) to (1, 1)
    (``sklearn.metrics.roc_curve`` without dropping collinear points)."""
    labels = np.asarray(labels, dtype=bool).ravel()
    fpr, tpr, _ = skm.roc_curve(
        labels, np.asarray(scores, dtype=np.float64).ravel(), drop_intermediate=False
    )
    return fpr, tpr


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) image indices drawn with replacement; the same seed gives the same draws."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n))


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_interval(
    statistic: IndexStatistic, n: int, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> Interval:
    """``statistic(indices)`` on all n images and on ``n_boot`` resamples of them."""
    if n == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, 0, n_boot, 0, level)
    estimate = float(statistic(np.arange(n)))
    draws = np.array([statistic(idx) for idx in bootstrap_indices(n, n_boot, seed)], dtype=float)
    low, high = _percentiles(draws, level)
    return Interval(estimate, low, high, n, n_boot, int(np.isfinite(draws).sum()), level)


def bootstrap_mean(
    values: np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Mean of the finite values with its interval (vectorized: one draw matrix)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, 0, n_boot, 0, level)
    draws = finite[bootstrap_indices(finite.size, n_boot, seed)].mean(axis=1)
    low, high = _percentiles(draws, level)
    return Interval(float(finite.mean()), low, high, int(finite.size), n_boot, n_boot, level)


def paired_difference(
    statistic_a: IndexStatistic,
    statistic_b: IndexStatistic,
    n: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """A - B on the same images, and on the same resampled images for its interval."""
    return bootstrap_interval(
        lambda idx: statistic_a(idx) - statistic_b(idx), n, n_boot=n_boot, seed=seed, level=level
    )


def paired_mean_difference(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Mean of ``a - b`` over the pairs where both are finite (the same images), with the
    percentile interval of resampled pairs."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return bootstrap_mean(a - b, n_boot=n_boot, seed=seed, level=level)


@dataclasses.dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho with its two-sided p-value, the number of points, and whether the
    number of points can carry a test at all."""

    rho: float
    p_value: float | None
    n: int
    testable: bool
    method: str
    note: str

    @property
    def significant(self) -> bool:
        """p < 0.05 on a testable correlation."""
        return self.testable and self.p_value is not None and self.p_value < 0.05

    def to_json(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        data["rho"] = _finite_or_none(self.rho)
        data["significant"] = self.significant
        return data


def _exact_spearman_p(rx: np.ndarray, ry: np.ndarray) -> float:
    """Share of all n! orderings of y whose |rho| reaches the observed |rho| (two-sided), by
    ``scipy.stats.permutation_test`` permuting the one sample y against fixed x (exact)."""
    cx = rx - rx.mean()

    def abs_rho(y: np.ndarray, axis: int = -1) -> np.ndarray:
        cy = y - y.mean(axis=axis, keepdims=True)
        denom = np.sqrt((cx**2).sum() * (cy**2).sum(axis=axis))
        return np.abs((cy * cx).sum(axis=axis) / denom)

    result = sps.permutation_test(
        (ry,),
        abs_rho,
        permutation_type="pairings",
        n_resamples=np.inf,
        alternative="greater",
        vectorized=True,
    )
    return float(result.pvalue)


def smallest_attainable_p(n: int) -> float:
    """The smallest two-sided exact p-value Spearman can give with n untied points: 2 / n!."""
    return 2.0 / math.factorial(n) if n <= 20 else 0.0


def spearman(x: np.ndarray, y: np.ndarray) -> RankCorrelation:
    """Spearman's rho of paired values (NaN pairs dropped)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(x.size)
    if n < MIN_MODELS_TESTABLE:
        return RankCorrelation(
            float("nan") if n < 2 else _rho(x, y),
            None,
            n,
            False,
            "none",
            f"not testable: {n} models (< {MIN_MODELS_TESTABLE})",
        )
    rho = _rho(x, y)
    if not math.isfinite(rho):
        return RankCorrelation(rho, None, n, False, "none", "not testable: a constant variable")
    rx, ry = sps.rankdata(x), sps.rankdata(y)
    if n <= _EXACT_MAX_N:
        p, method = _exact_spearman_p(rx, ry), "exact permutation"
    else:
        p, method = float(sps.spearmanr(x, y).pvalue), "t approximation"
    floor = smallest_attainable_p(n)
    note = (
        f"with {n} models no ordering can reach p < 0.05 (smallest p = {floor:.3f})"
        if floor >= 0.05
        else f"{n} models"
    )
    return RankCorrelation(rho, p, n, True, method, note)


def _rho(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = sps.rankdata(x), sps.rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])
