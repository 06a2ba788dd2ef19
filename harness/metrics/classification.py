"""Classification metrics per model, at the model's own validation threshold, with bootstrap CIs;
calibration of the probabilities (Brier score, expected calibration error, reliability diagram)
and the precision-recall curve (scikit-learn); paired AUROC comparisons between models on the
same resampled images, with DeLong's test beside the bootstrap (MLstatkit).

The decision for each image is the result's ``positive`` flag (positive probability >= the
model's ``threshold``), so every threshold-bound metric uses the threshold the model was served
with, never one tuned on the test split.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from harness.metrics.stats import Interval, auroc, bootstrap_interval, paired_difference
from ptxplain.errors import InvalidInputError

__all__ = [
    "CLASSIFICATION_METRICS",
    "ECE_BINS",
    "ModelPredictions",
    "PairedComparison",
    "classification_summary",
    "confusion_counts",
    "delong",
    "expected_calibration_error",
    "paired_auroc_comparisons",
    "probability_calibration",
]

CLASSIFICATION_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "auroc",
    "sensitivity",
    "specificity",
    "f1",
    "brier",
    "ece",
)
ECE_BINS = 10


@dataclasses.dataclass(frozen=True)
class ModelPredictions:
    """One model's answers on the images it answered (aligned arrays)."""

    image_ids: tuple[str, ...]
    labels: np.ndarray  # bool, ground truth
    probabilities: np.ndarray  # positive-class probability
    positive: np.ndarray  # bool, the model's decision at its threshold

    def __post_init__(self) -> None:
        n = len(self.image_ids)
        if not (self.labels.shape == self.probabilities.shape == self.positive.shape == (n,)):
            raise InvalidInputError(f"predictions of {n} images have misaligned arrays")


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def confusion_counts(labels: np.ndarray, positive: np.ndarray) -> dict[str, int]:
    labels, positive = labels.astype(bool), positive.astype(bool)
    return {
        "tp": int(np.count_nonzero(labels & positive)),
        "fp": int(np.count_nonzero(~labels & positive)),
        "tn": int(np.count_nonzero(~labels & ~positive)),
        "fn": int(np.count_nonzero(labels & ~positive)),
    }


def _from_counts(metric: str, c: dict[str, int]) -> float:
    sensitivity = _ratio(c["tp"], c["tp"] + c["fn"])
    specificity = _ratio(c["tn"], c["tn"] + c["fp"])
    if metric == "accuracy":
        return _ratio(c["tp"] + c["tn"], sum(c.values()))
    if metric == "balanced_accuracy":
        return (sensitivity + specificity) / 2.0
    if metric == "sensitivity":
        return sensitivity
    if metric == "specificity":
        return specificity
    if metric == "f1":
        return _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"])
    raise InvalidInputError(f"unknown classification metric {metric!r}")


def _statistic(metric: str, predictions: ModelPredictions) -> Callable[[np.ndarray], float]:
    labels, probabilities, positive = (
        predictions.labels,
        predictions.probabilities,
        predictions.positive,
    )
    if metric == "auroc":
        return lambda idx: auroc(labels[idx], probabilities[idx])
    if metric == "brier":
        return lambda idx: float(np.mean((probabilities[idx] - labels[idx]) ** 2))
    if metric == "ece":
        return lambda idx: expected_calibration_error(labels[idx], probabilities[idx])
    return lambda idx: _from_counts(metric, confusion_counts(labels[idx], positive[idx]))


def classification_summary(
    predictions: ModelPredictions, *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Interval]:
    """Each of :data:`CLASSIFICATION_METRICS` with its 95% percentile bootstrap interval."""
    n = len(predictions.image_ids)
    return {
        metric: bootstrap_interval(_statistic(metric, predictions), n, n_boot=n_boot, seed=seed)
        for metric in CLASSIFICATION_METRICS
    }


def _bin_of(probabilities: np.ndarray, bins: int) -> np.ndarray:
    return np.clip((probabilities * bins).astype(np.int64), 0, bins - 1)


def expected_calibration_error(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Sum over equal-width probability bins of (bin share) x |observed rate - mean probability|
    (the last bin includes 1.0); NaN with no images."""
    if labels.size == 0:
        return float("nan")
    which = _bin_of(probabilities, bins)
    gaps = 0.0
    for b in np.unique(which):
        inside = which == b
        gaps += inside.mean() * abs(labels[inside].mean() - probabilities[inside].mean())
    return float(gaps)


def probability_calibration(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
) -> dict[str, Any]:
    """The reliability diagram's points (``sklearn.calibration.calibration_curve``, equal-width
    bins), the precision-recall curve and average precision (``sklearn.metrics``)."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import average_precision_score, precision_recall_curve

    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        return {"reliability": None, "pr_curve": None, "average_precision": None}
    observed, predicted = calibration_curve(labels, probabilities, n_bins=bins)
    counts = np.bincount(_bin_of(probabilities, bins), minlength=bins)
    precision, recall, _ = precision_recall_curve(labels, probabilities)
    return {
        "reliability": {
            "mean_probability": predicted.tolist(),
            "observed_rate": observed.tolist(),
            "bin_counts": counts.tolist(),
        },
        "pr_curve": {"precision": precision.tolist(), "recall": recall.tolist()},
        "average_precision": float(average_precision_score(labels, probabilities)),
        "prevalence": float(labels.mean()),
    }


def delong(
    labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, *, seed: int = 0
) -> dict[str, Any]:
    """DeLong's test of AUROC A = AUROC B on the same images (``MLstatkit.Delong_test``): z
    (A - B over its standard error) and the two-sided p-value; MLstatkit falls back to a
    bootstrap when the variance of the difference is degenerate, and ``method`` says so."""
    from MLstatkit import Delong_test

    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        return {"z": None, "p_value": None, "method": "none: one class only"}
    z, p, _, _, _, _, info = Delong_test(
        labels.astype(int), scores_b, scores_a, n_boot=1000, random_state=seed
    )
    finite = [v if np.isfinite(v) else None for v in (float(z), float(p))]
    return {"z": finite[0], "p_value": finite[1], "method": str(info.get("method", "delong"))}


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """AUROC of ``model_a`` minus that of ``model_b`` on the images both answered."""

    model_a: str
    model_b: str
    difference: Interval
    delong: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def excludes_zero(self) -> bool:
        d = self.difference
        return bool(d.low > 0 or d.high < 0)

    def to_json(self) -> dict[str, object]:
        return {
            "model_a": self.model_a,
            "model_b": self.model_b,
            "auroc_difference": self.difference.to_json(),
            "ci_excludes_zero": self.excludes_zero,
            "delong": self.delong,
        }


def _common(a: ModelPredictions, b: ModelPredictions) -> tuple[np.ndarray, np.ndarray]:
    index_b = {image_id: i for i, image_id in enumerate(b.image_ids)}
    pairs = [(i, index_b[x]) for i, x in enumerate(a.image_ids) if x in index_b]
    rows = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return rows[:, 0], rows[:, 1]


def _auroc_of(labels: np.ndarray, scores: np.ndarray) -> Callable[[np.ndarray], float]:
    return lambda idx: auroc(labels[idx], scores[idx])


def paired_auroc_comparisons(
    models: Mapping[str, ModelPredictions], *, n_boot: int = 1000, seed: int = 0
) -> list[PairedComparison]:
    """Every pair of models: AUROC difference on shared images, same resamples for both."""
    comparisons = []
    for name_a, name_b in itertools.combinations(sorted(models), 2):
        a, b = models[name_a], models[name_b]
        rows_a, rows_b = _common(a, b)
        labels = a.labels[rows_a]
        probs_a, probs_b = a.probabilities[rows_a], b.probabilities[rows_b]
        difference = paired_difference(
            _auroc_of(labels, probs_a),
            _auroc_of(labels, probs_b),
            rows_a.size,
            n_boot=n_boot,
            seed=seed,
        )
        test = delong(labels, probs_a, probs_b, seed=seed)
        comparisons.append(PairedComparison(name_a, name_b, difference, test))
    return comparisons
