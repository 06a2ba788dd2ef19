"""Numbers training needs from validation: AUROC, the decision threshold, class weights.

The threshold maximises Youden's J (sensitivity + specificity - 1) on the validation split.
Candidate thresholds are the midpoints between adjacent distinct scores, so a perfectly
separated validation set gets the threshold halfway across the gap, not on a sample's score.
Among equal J the highest threshold wins (fewest positive calls).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from harness.metrics.stats import auroc
from ptxplain.errors import InvalidInputError

__all__ = ["ThresholdChoice", "class_weights", "rates_at", "validation_auroc", "youden_threshold"]


@dataclasses.dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold and what it does on the split it was chosen on."""

    threshold: float
    sensitivity: float
    specificity: float

    @property
    def youden_j(self) -> float:
        return self.sensitivity + self.specificity - 1.0


def class_weights(labels: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """Inverse-frequency weights ``n / (n_classes * n_c)``: each class carries half the loss."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)
    if (counts == 0).any():
        raise InvalidInputError(
            f"the training split needs every class; image counts per class: {counts.tolist()}"
        )
    return counts.sum() / (n_classes * counts.astype(np.float64))


def validation_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC on the validation split; both classes are required."""
    value = auroc(labels, scores)
    if not np.isfinite(value):
        raise InvalidInputError(
            "the validation split needs both classes (AUROC drives early stopping)"
        )
    return float(value)


def rates_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """(sensitivity, specificity) when ``score >= threshold`` is called positive."""
    truth = np.asarray(labels, dtype=bool)
    called = np.asarray(scores, dtype=np.float64) >= threshold
    sensitivity = float((called & truth).sum() / max(int(truth.sum()), 1))
    specificity = float((~called & ~truth).sum() / max(int((~truth).sum()), 1))
    return sensitivity, specificity


def _candidates(scores: np.ndarray) -> np.ndarray:
    distinct = np.unique(np.asarray(scores, dtype=np.float64))
    middles = (distinct[:-1] + distinct[1:]) / 2.0
    return np.r_[distinct[-1] + 1e-12, middles[::-1], distinct[0]]


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> ThresholdChoice:
    """The candidate threshold with the largest Youden's J (see the module docstring)."""
    best: ThresholdChoice | None = None
    for threshold in _candidates(scores):
        sensitivity, specificity = rates_at(labels, scores, float(threshold))
        choice = ThresholdChoice(float(threshold), sensitivity, specificity)
        if best is None or choice.youden_j > best.youden_j + 1e-12:
            best = choice
    if best is None:
        raise InvalidInputError("cannot choose a threshold without validation scores")
    return best
