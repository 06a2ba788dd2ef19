"""The maintained libraries that replaced hand-written statistics give the old results.

The hand-written versions live on here only as references: AUROC and the ROC curve
(scikit-learn), the exact Spearman permutation p-value (``scipy.stats.permutation_test``) and
SSIM (``skimage.metrics.structural_similarity``), each held to the old code on the same inputs.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import ndimage
from scipy import stats as sps

from harness.metrics.robustness import ssim
from harness.metrics.stats import auroc, roc_curve, spearman


def _old_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    labels = np.asarray(labels, dtype=bool).ravel()
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    ranks = sps.rankdata(np.asarray(scores, dtype=np.float64).ravel())
    return (float(ranks[labels].sum()) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _old_roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    tp = np.cumsum(sorted_labels)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    n_pos, n_neg = max(int(labels.sum()), 1), max(int((~labels).sum()), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def _old_exact_spearman_p(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = sps.rankdata(x), sps.rankdata(y)
    rho = float(np.corrcoef(rx, ry)[0, 1])
    perms = np.array(list(itertools.permutations(range(ry.size))), dtype=np.int64)
    centered_x = rx - rx.mean()
    centered_y = ry[perms] - ry.mean()
    denom = math.sqrt(float((centered_x**2).sum() * ((ry - ry.mean()) ** 2).sum()))
    rhos = centered_y @ centered_x / denom
    return float(np.mean(np.abs(rhos) >= abs(rho) - 1e-12))


def _old_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, sigma: float = 1.5) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(x, sigma, truncate=3.5, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def _score_sets() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    sets = [(np.array([0, 0, 1, 1, 1]), np.array([0.1, 0.6, 0.6, 0.8, 0.3]))]
    for n in (7, 40, 333):
        labels = rng.random(n) < 0.4
        labels[:2] = (True, False)
        sets.append((labels, rng.random(n) + 0.5 * labels))
        sets.append((labels, np.round(rng.random(n), 1)))  # many ties
    return sets


@pytest.mark.parametrize("case", range(7))
def test_sklearn_auroc_and_roc_curve_match_the_rank_sum_code(case: int) -> None:
    labels, scores = _score_sets()[case]
    assert abs(auroc(labels, scores) - _old_auroc(labels, scores)) < 1e-12
    fpr, tpr = roc_curve(labels, scores)
    old_fpr, old_tpr = _old_roc_curve(labels, scores)
    np.testing.assert_allclose(fpr, old_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, old_tpr, atol=1e-12)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1, 2, 3, 4], [1, 2, 3, 4]),
        ([1, 2, 3, 4], [2, 1, 4, 3]),
        ([18, 34, 50, 101, 16], [0.7, 0.56, 0.41, 0.3, 0.98]),
        ([1, 2, 3, 4, 5, 6, 7], [3, 1, 2, 7, 5, 4, 6]),
        ([1, 1, 2, 3, 5, 8], [0.2, 0.1, 0.4, 0.4, 0.9, 0.3]),  # ties on both sides
        ([18, 34, 50, 101, 11, 13, 16, 19, 22], [5, 3, 8, 1, 9, 2, 7, 6, 4]),
    ],
)
def test_permutation_test_p_equals_the_enumerated_p(x: list[float], y: list[float]) -> None:
    result = spearman(np.array(x, dtype=float), np.array(y, dtype=float))
    assert result.method == "exact permutation"
    expected = _old_exact_spearman_p(np.array(x, dtype=float), np.array(y, dtype=float))
    # Both count the same orderings out of n!: the p-values are the same fraction.
    assert result.p_value is not None
    assert round(result.p_value * math.factorial(len(x))) == round(
        expected * math.factorial(len(x))
    )
    assert result.p_value == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("shape", [(3, 5), (8, 8), (16, 16), (48, 61), (64, 64)])
def test_skimage_ssim_matches_the_gaussian_window_code(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    a = rng.random(shape)
    b = np.clip(a + rng.normal(0.0, 0.2, shape), 0.0, 1.0)
    for x, y in ((a, b), (a, a), (a, np.zeros(shape)), (np.zeros(shape), np.zeros(shape))):
        assert abs(ssim(x, y) - _old_ssim(x, y)) < 1e-6
