"""Classification metrics per model, at the model's own validation threshold, with bootstrap CIs;
paired AUROC comparisons between models on the same resampled images.

The decision for each image is the result's ``positive`` flag (positive probability >= the
model's ``threshold``), so every threshold-bound metric uses the threshold the model was served
with, never one tuned on the test split.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping

import numpy as np

from harness.metrics.stats import Interval, auroc, bootstrap_interval, paired_difference
from ptxplain.errors import InvalidInputError

__all__ = [
    "CLASSIFICATION_METRICS",
    "ModelPredictions",
    "PairedComparison",
    "classification_summary",
    "confusion_counts",
    "paired_auroc_comparisons",
]

CLASSIFICATION_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "auroc",
    "sensitivity",
    "specificity",
    "f1",
)


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


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """AUROC of ``model_a`` minus that of ``model_b`` on the images both answered."""

    model_a: str
    model_b: str
    difference: Interval

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
        comparisons.append(PairedComparison(name_a, name_b, difference))
    return comparisons
