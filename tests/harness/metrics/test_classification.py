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


def test_brier_and_ece_worked_example() -> None:
    from harness.metrics.classification import expected_calibration_error

    labels = np.array([1, 0, 1, 1], dtype=bool)
    probs = np.array([0.9, 0.1, 0.8, 0.3])
    # One image per bin: gaps 0.1, 0.1, 0.2, 0.7, each weighted 1/4.
    assert expected_calibration_error(labels, probs) == pytest.approx(0.275)
    predictions = ModelPredictions(("a", "b", "c", "d"), labels, probs, probs >= 0.5)
    summary = classification_summary(predictions, n_boot=20)
    assert summary["brier"].estimate == pytest.approx((0.01 + 0.01 + 0.04 + 0.49) / 4)
    assert summary["ece"].estimate == pytest.approx(0.275)
    # Two images in one bin [0.5, 0.6): |observed 0.5 - mean probability 0.525| = 0.025.
    assert expected_calibration_error(np.array([1, 0], bool), np.array([0.5, 0.55])) == (
        pytest.approx(0.025)
    )


def test_reliability_and_pr_curves() -> None:
    from harness.metrics.classification import probability_calibration

    labels = np.array([0, 0, 1, 1, 1, 0], dtype=bool)
    probs = np.array([0.05, 0.15, 0.85, 0.95, 0.9, 0.8])
    curves = probability_calibration(labels, probs)
    reliability = curves["reliability"]
    assert reliability["bin_counts"][0] == 1 and reliability["bin_counts"][8] == 2
    assert reliability["observed_rate"][0] == 0.0  # the 0.0-0.1 bin holds one negative
    pr = curves["pr_curve"]
    assert pr["recall"][0] == 1.0 and pr["precision"][-1] == 1.0
    assert curves["prevalence"] == 0.5
    # AP by hand: ranked 0.95+, 0.9+, 0.85+, 0.8-, ... -> precision 1 at each positive.
    assert curves["average_precision"] == pytest.approx(1.0)
    assert probability_calibration(np.ones(3, bool), np.ones(3))["reliability"] is None


def _delong_by_structural_components(
    labels: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[float, float]:
    """DeLong, DeLong & Clarke-Pearson (1988) written out pair by pair: per-case structural
    components, their covariance, z of AUROC A - B and its two-sided normal p-value."""
    from scipy import stats

    pos, neg = labels.astype(bool), ~labels.astype(bool)

    def components(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        return psi.mean(axis=1), psi.mean(axis=0)  # V10 per positive, V01 per negative

    v10a, v01a = components(a)
    v10b, v01b = components(b)
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    cov = s10 / pos.sum() + s01 / neg.sum()
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (v10a.mean() - v10b.mean()) / np.sqrt(var)
    return float(z), float(2 * stats.norm.sf(abs(z)))


def test_delong_matches_the_structural_components_computation() -> None:
    from harness.metrics.classification import delong

    rng = np.random.default_rng(5)
    labels = rng.random(80) < 0.45
    a = rng.normal(size=80) + 1.2 * labels
    b = np.round(0.6 * a + rng.normal(size=80) * 0.8, 1)  # correlated, with ties
    result = delong(labels, a, b)
    z, p = _delong_by_structural_components(labels, a, b)
    assert result["method"] == "delong"
    assert result["z"] == pytest.approx(z, rel=1e-9)
    assert result["p_value"] == pytest.approx(p, rel=1e-9)
    assert delong(np.ones(4, bool), a[:4], b[:4])["p_value"] is None
