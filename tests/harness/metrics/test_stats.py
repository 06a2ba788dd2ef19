"""Bootstrap intervals, rank AUROC and Spearman with exact small-n p-values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from harness.metrics.stats import (
    auroc,
    bootstrap_interval,
    paired_difference,
    roc_curve,
    smallest_attainable_p,
    spearman,
)


def test_auroc_by_hand() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.6, 0.6, 0.8, 0.3])
    # Pairs (pos, neg): 0.6>0.1, 0.6=0.6 (1/2), 0.8>both, 0.3>0.1, 0.3<0.6 -> 4.5 / 6.
    assert auroc(labels, scores) == pytest.approx(4.5 / 6)
    assert math.isnan(auroc(np.ones(3), np.arange(3)))


def test_roc_curve_ends_and_area() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.6, 0.6, 0.8, 0.3])
    fpr, tpr = roc_curve(labels, scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert float(np.trapezoid(tpr, fpr)) == pytest.approx(auroc(labels, scores))


def test_bootstrap_interval_contains_the_estimate_and_is_deterministic() -> None:
    values = np.random.default_rng(3).normal(2.0, 1.0, size=200)
    mean = lambda idx: float(values[idx].mean())  # noqa: E731
    first = bootstrap_interval(mean, values.size, n_boot=500, seed=7)
    again = bootstrap_interval(mean, values.size, n_boot=500, seed=7)
    other = bootstrap_interval(mean, values.size, n_boot=500, seed=8)
    assert first == again
    assert first != other
    assert first.low < first.estimate < first.high
    assert first.estimate == pytest.approx(values.mean())
    # ~ +-1.96 standard errors of the mean.
    assert first.high - first.low == pytest.approx(2 * 1.96 * values.std() / np.sqrt(200), rel=0.2)
    assert (first.n, first.n_boot, first.n_valid) == (200, 500, 500)


def test_bootstrap_counts_resamples_where_the_statistic_is_undefined() -> None:
    labels = np.array([1] + [0] * 9)
    scores = np.linspace(0, 1, 10)
    interval = bootstrap_interval(lambda idx: auroc(labels[idx], scores[idx]), 10, n_boot=200)
    assert 0 < interval.n_valid < 200  # resamples without the one positive are dropped


def test_bootstrap_of_no_images_is_all_nan() -> None:
    interval = bootstrap_interval(lambda idx: 1.0, 0)
    assert interval.n == 0 and math.isnan(interval.estimate)
    assert interval.to_json()["estimate"] is None


def test_paired_difference_of_a_statistic_with_itself_is_exactly_zero() -> None:
    values = np.arange(50.0)
    mean = lambda idx: float(values[idx].mean())  # noqa: E731
    diff = paired_difference(mean, mean, 50, n_boot=100)
    assert (diff.estimate, diff.low, diff.high) == (0.0, 0.0, 0.0)


def test_spearman_needs_four_models_and_says_so() -> None:
    result = spearman(np.array([1, 2, 3]), np.array([1, 2, 3]))
    assert not result.testable and result.p_value is None
    assert "not testable: 3 models" in result.note
    assert not result.significant


def test_spearman_exact_p_matches_enumeration_by_hand() -> None:
    four = spearman(np.array([1, 2, 3, 4]), np.array([10, 20, 30, 40]))
    assert four.rho == pytest.approx(1.0)
    assert four.p_value == pytest.approx(2 / 24)  # only the two perfect orderings reach |rho|=1
    assert not four.significant and "no ordering can reach" in four.note
    five = spearman(np.arange(5), np.arange(5) ** 2)
    assert five.p_value == pytest.approx(2 / 120) and five.significant
    assert smallest_attainable_p(5) == pytest.approx(2 / 120)


def test_spearman_large_n_uses_scipy_and_drops_nans() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=12), rng.normal(size=12)
    y[0] = np.nan
    result = spearman(x, y)
    expected = sps.spearmanr(x[1:], y[1:])
    assert result.n == 11 and result.method == "t approximation"
    assert result.rho == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)


def test_bootstrap_mean_matches_the_generic_bootstrap_and_drops_nans() -> None:
    from harness.metrics.stats import bootstrap_mean

    values = np.random.default_rng(1).random(40)
    fast = bootstrap_mean(values, n_boot=300, seed=4)
    slow = bootstrap_interval(lambda idx: float(values[idx].mean()), 40, n_boot=300, seed=4)
    assert fast == slow
    with_nan = bootstrap_mean(np.r_[values, np.nan], n_boot=300, seed=4)
    assert with_nan == fast  # the NaN is dropped, and n says 40
