"""Localization metrics of one explanation map against one lesion mask, in mask coordinates.

Every function takes the map already laid onto the original image (``map_to_original``) and a
bool mask of the same shape with at least one pixel set (positive images only). Maps are
min-max normalized to [0, 1] first (:func:`normalize_map`); a constant map becomes all zeros.
docs/metrics.md defines each metric, its edge cases and its tie rule.
"""

from __future__ import annotations

import numpy as np

from ptxplain.errors import InvalidInputError

__all__ = [
    "EHR_FLOOR",
    "FIXED_THRESHOLD",
    "SIZE_BINS",
    "SWEEP_THRESHOLDS",
    "effective_heat_ratio",
    "energy_pointing_game",
    "localization_scores",
    "mean_heat_gap",
    "normalize_map",
    "overlap",
    "pixel_auroc",
    "pointing_game",
    "relevance_rank_accuracy",
    "size_bin",
    "size_edges",
]

EHR_FLOOR = 0.1
EHR_LEVELS = np.linspace(0.0, 1.0, 11)
EHR_CAP = 0.99
FIXED_THRESHOLD = 0.5
SWEEP_THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(1, 10))
SIZE_BINS = ("small", "medium", "large")


def _check(heat: np.ndarray, mask: np.ndarray) -> None:
    if heat.shape != mask.shape or heat.ndim != 2:
        raise InvalidInputError(f"map {heat.shape} and mask {mask.shape} must be one (H, W) shape")
    if not mask.any():
        raise InvalidInputError("localization needs a mask with at least one lesion pixel")


def normalize_map(heat: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] as float64; a constant (or non-finite) map becomes all zeros."""
    values = np.nan_to_num(np.asarray(heat, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if high - low <= 0:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def effective_heat_ratio(norm: np.ndarray, mask: np.ndarray) -> float:
    """Trapezoidal area, over q = 0, 0.1, …, 1, of heat inside the mask at or above t divided
    by the count of pixels at or above t, with t = min(q-quantile of the heat left after
    zeroing values below 0.1, 0.99 * max). 0 when nothing reaches 0.1."""
    floored = np.where(norm < EHR_FLOOR, 0.0, norm)
    remaining = floored[floored > 0]
    if remaining.size == 0:
        return 0.0
    cap = EHR_CAP * float(remaining.max())
    thresholds = np.minimum(np.quantile(remaining, EHR_LEVELS), cap)
    inside = floored[mask]
    ratios = [
        float(inside[inside >= t].sum()) / max(int((floored >= t).sum()), 1) for t in thresholds
    ]
    return float(np.trapezoid(ratios, EHR_LEVELS))


def pointing_game(norm: np.ndarray, mask: np.ndarray) -> float:
    """1 when the map's maximum lies inside the mask, 0 outside; with ties, the share of the
    maximal pixels that lie inside (the expected hit under a random tie-break)."""
    peak = norm == norm.max()
    return float(np.count_nonzero(peak & mask)) / float(np.count_nonzero(peak))


def energy_pointing_game(norm: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's total heat that falls inside the mask; 0 for an all-zero map."""
    total = float(norm.sum())
    return float(norm[mask].sum()) / total if total > 0 else 0.0


def relevance_rank_accuracy(norm: np.ndarray, mask: np.ndarray) -> float:
    """Share of the K hottest pixels (K = mask size) inside the mask. Pixels tied with the
    K-th value are counted by their share inside the mask (a random tie-break's expectation)."""
    k = int(np.count_nonzero(mask))
    flat = norm.ravel()
    kth = np.partition(flat, flat.size - k)[flat.size - k]
    above = norm > kth
    tied = norm == kth
    inside_above = np.count_nonzero(above & mask)
    slots = k - np.count_nonzero(above)
    inside_tied = np.count_nonzero(tied & mask) / np.count_nonzero(tied)
    return float(inside_above + slots * inside_tied) / k


def pixel_auroc(norm: np.ndarray, mask: np.ndarray) -> float:
    """AUROC of heat as a score for "pixel is in the mask" (ties count one half); NaN when the
    mask covers the whole image."""
    positives = norm[mask].ravel()
    negatives = np.sort(norm[~mask].ravel())
    if negatives.size == 0:
        return float("nan")
    below = np.searchsorted(negatives, positives, side="left")
    tied = np.searchsorted(negatives, positives, side="right") - below
    return float((below.sum() + 0.5 * tied.sum()) / (positives.size * negatives.size))


def overlap(norm: np.ndarray, mask: np.ndarray, threshold: float) -> tuple[float, float]:
    """(IoU, Dice) of the region ``norm >= threshold`` with the mask."""
    region = norm >= threshold
    intersection = float(np.count_nonzero(region & mask))
    union = float(np.count_nonzero(region | mask))
    sizes = float(np.count_nonzero(region) + np.count_nonzero(mask))
    return intersection / union, 2.0 * intersection / sizes


def mean_heat_gap(norm: np.ndarray, mask: np.ndarray) -> float:
    """Mean heat inside the mask minus mean heat outside it; NaN with nothing outside."""
    if mask.all():
        return float("nan")
    return float(norm[mask].mean() - norm[~mask].mean())


def localization_scores(heat: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Every per-image localization metric of one map (any scale) against one mask."""
    mask = np.asarray(mask, dtype=bool)
    _check(heat, mask)
    norm = normalize_map(heat)
    iou_fixed, dice_fixed = overlap(norm, mask, FIXED_THRESHOLD)
    sweep = [overlap(norm, mask, t) for t in SWEEP_THRESHOLDS]
    scores = {
        "effective_heat_ratio": effective_heat_ratio(norm, mask),
        "pointing_game": pointing_game(norm, mask),
        "energy_pointing_game": energy_pointing_game(norm, mask),
        "relevance_rank_accuracy": relevance_rank_accuracy(norm, mask),
        "pixel_auroc": pixel_auroc(norm, mask),
        "iou_at_0.5": iou_fixed,
        "dice_at_0.5": dice_fixed,
        "iou_best": max(iou for iou, _ in sweep),
        "dice_best": max(dice for _, dice in sweep),
        "mean_heat_gap": mean_heat_gap(norm, mask),
    }
    for t, (iou, dice) in zip(SWEEP_THRESHOLDS, sweep, strict=True):
        scores[f"iou_sweep_{t:.1f}"] = iou
        scores[f"dice_sweep_{t:.1f}"] = dice
    return scores


def size_edges(area_fractions: np.ndarray) -> tuple[float, float]:
    """Tertile edges of lesion area (mask pixels / image pixels) over the evaluated positives."""
    values = np.asarray(area_fractions, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [1.0 / 3.0, 2.0 / 3.0])
    return float(low), float(high)


def size_bin(area_fraction: float, edges: tuple[float, float]) -> str:
    """ "small" up to the first edge, "medium" up to the second, "large" above."""
    if area_fraction <= edges[0]:
        return SIZE_BINS[0]
    return SIZE_BINS[1] if area_fraction <= edges[1] else SIZE_BINS[2]
