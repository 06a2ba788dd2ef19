"""Classification metrics at the model's threshold and paired AUROC comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.metrics.classification import (
    ModelPredictions,
    classification_summary,
    confusion_counts,
    paired_auroc_comparisons,
)
from ptxplain.errors import InvalidInputError


def _predictions(labels: list[int], probs: list[float], positive: list[int]) -> ModelPredictions:
    ids = tuple(f"img{i}" for i in range(len(labels)))
    return ModelPredictions(
        ids, np.array(labels, bool), np.array(probs, float), np.array(positive, bool)
    )


def test_metrics_by_hand() -> None:
    # tp=2 (0.9, 0.6), fn=1 (0.3), tn=3, fp=1 (0.7). The threshold is the model's: 0.55.
    p = _predictions(
        [1, 1, 1, 0, 0, 0, 0],
        [0.9, 0.6, 0.3, 0.7, 0.2, 0.1, 0.4],
        [1, 1, 0, 1, 0, 0, 0],
    )
    assert confusion_counts(p.labels, p.positive) == {"tp": 2, "fp": 1, "tn": 3, "fn": 1}
    summary = classification_summary(p, n_boot=200, seed=1)
    assert summary["accuracy"].estimate == pytest.approx(5 / 7)
    assert summary["sensitivity"].estimate == pytest.approx(2 / 3)
    assert summary["specificity"].estimate == pytest.approx(3 / 4)
    assert summary["balanced_accuracy"].estimate == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert summary["f1"].estimate == pytest.approx(4 / 6)
    # Positive scores 0.9, 0.6, 0.3 vs negatives 0.7, 0.2, 0.1, 0.4: 4 + 3 + 2 wins of 12.
    assert summary["auroc"].estimate == pytest.approx(9 / 12)
    for interval in summary.values():
        assert interval.low <= interval.estimate <= interval.high
        assert interval.n == 7


def test_summary_is_deterministic_with_a_seed() -> None:
    rng = np.random.default_rng(5)
    labels = rng.random(60) < 0.4
    probs = np.clip(labels * 0.3 + rng.random(60) * 0.7, 0, 1)
    p = ModelPredictions(tuple(map(str, range(60))), labels, probs, probs >= 0.5)
    assert classification_summary(p, n_boot=100, seed=3) == classification_summary(
        p, n_boot=100, seed=3
    )


def test_sensitivity_without_positives_is_nan_not_zero() -> None:
    p = _predictions([0, 0], [0.1, 0.9], [0, 1])
    assert math.isnan(classification_summary(p, n_boot=10)["sensitivity"].estimate)


def test_paired_comparison_uses_shared_images() -> None:
    labels = [1, 1, 0, 0, 1, 0]
    good = _predictions(labels, [0.9, 0.8, 0.1, 0.2, 0.7, 0.3], [1, 1, 0, 0, 1, 0])
    bad = _predictions(labels, [0.1, 0.2, 0.9, 0.8, 0.3, 0.7], [0, 0, 1, 1, 0, 1])
    # Drop one image from the bad model: the comparison runs on the five both answered.
    bad = ModelPredictions(
        bad.image_ids[:5], bad.labels[:5], bad.probabilities[:5], bad.positive[:5]
    )
    (comparison,) = paired_auroc_comparisons({"good": good, "bad": bad}, n_boot=200)
    assert (comparison.model_a, comparison.model_b) == ("bad", "good")
    assert comparison.difference.n == 5
    assert comparison.difference.estimate == pytest.approx(-1.0)
    assert comparison.to_json()["ci_excludes_zero"] is True


def test_misaligned_predictions_raise() -> None:
    with pytest.raises(InvalidInputError, match="misaligned"):
        ModelPredictions(("a",), np.array([True, False]), np.array([0.1]), np.array([True]))
