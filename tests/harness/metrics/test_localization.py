"""Localization metrics on hand-made 4x4 maps whose values are worked out by hand
(docs/metrics.md walks through the same example)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics.localization import (
    effective_heat_ratio,
    energy_pointing_game,
    localization_scores,
    mean_heat_gap,
    normalize_map,
    overlap,
    pixel_auroc,
    pointing_game,
    relevance_rank_accuracy,
    size_bin,
    size_edges,
)
from ptxplain.errors import InvalidInputError

HEAT = np.array(
    [
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.5, 0.0],
        [0.0, 0.5, 0.05, 0.0],
        [0.0, 0.0, 0.0, 0.2],
    ]
)
MASK = np.zeros((4, 4), dtype=bool)
MASK[1, 1] = MASK[1, 2] = True


def test_effective_heat_ratio_worked_example() -> None:
    # 0.05 is zeroed; the rest sorted is [0.2, 0.5, 0.5, 1.0]. Ratios over q = 0..1:
    # q=0 -> t=0.2: 1.5 / 4; q=0.1..0.6 -> t in (0.2, 0.5]: 1.5 / 3; q=0.7..1 -> only the 1.0.
    ratios = [0.375] + [0.5] * 6 + [1.0] * 4
    expected = float(np.trapezoid(ratios, np.linspace(0, 1, 11)))
    assert expected == pytest.approx(0.66875)
    assert effective_heat_ratio(HEAT, MASK) == pytest.approx(0.66875)


def test_effective_heat_ratio_of_a_map_below_the_floor_is_zero() -> None:
    faint = np.full((4, 4), 0.05)
    assert effective_heat_ratio(faint, MASK) == 0.0
    assert localization_scores(np.full((4, 4), 3.0), MASK)["effective_heat_ratio"] == 0.0


def test_effective_heat_ratio_of_heat_only_inside_a_one_pixel_mask_is_one() -> None:
    heat = np.zeros((4, 4))
    heat[2, 2] = 1.0
    mask = np.zeros((4, 4), dtype=bool)
    mask[2, 2] = True
    assert effective_heat_ratio(heat, mask) == pytest.approx(1.0)
    assert effective_heat_ratio(heat, ~mask) == 0.0


def test_pointing_game_hit_miss_and_ties() -> None:
    assert pointing_game(HEAT, MASK) == 1.0
    assert pointing_game(HEAT, ~MASK) == 0.0
    tied = HEAT.copy()
    tied[3, 3] = 1.0  # a second maximum, outside the mask
    assert pointing_game(tied, MASK) == 0.5
    # A flat map ties everywhere: the chance level, mask pixels / all pixels.
    assert pointing_game(np.zeros((4, 4)), MASK) == pytest.approx(2 / 16)


def test_energy_pointing_game() -> None:
    assert energy_pointing_game(HEAT, MASK) == pytest.approx(1.5 / 2.25)
    assert energy_pointing_game(np.zeros((4, 4)), MASK) == 0.0


def test_relevance_rank_accuracy_counts_ties_by_their_share_inside() -> None:
    # K = 2: the 1.0 (inside) plus one of two 0.5s (one inside, one outside) -> (1 + 0.5) / 2.
    assert relevance_rank_accuracy(HEAT, MASK) == pytest.approx(0.75)
    untied = HEAT.copy()
    untied[2, 1] = 0.4
    assert relevance_rank_accuracy(untied, MASK) == 1.0


def test_pixel_auroc() -> None:
    # Negatives: 0.5, 0.2, 0.05 and eleven 0s. 1.0 beats all 14; 0.5 beats 13 and ties 1.
    assert pixel_auroc(HEAT, MASK) == pytest.approx((14 + 13.5) / 28)
    assert pixel_auroc(np.zeros((4, 4)), MASK) == 0.5
    assert np.isnan(pixel_auroc(HEAT, np.ones((4, 4), dtype=bool)))


def test_overlap_fixed_threshold_and_sweep() -> None:
    iou, dice = overlap(HEAT, MASK, 0.5)
    assert (iou, dice) == (pytest.approx(2 / 3), pytest.approx(0.8))
    assert overlap(HEAT, MASK, 0.6) == (pytest.approx(0.5), pytest.approx(2 / 3))
    scores = localization_scores(HEAT, MASK)
    assert scores["iou_sweep_0.1"] == pytest.approx(0.5)
    assert scores["iou_sweep_0.9"] == pytest.approx(0.5)
    assert scores["iou_best"] == pytest.approx(2 / 3)
    assert scores["dice_best"] == pytest.approx(0.8)


def test_mean_heat_gap() -> None:
    assert mean_heat_gap(HEAT, MASK) == pytest.approx(0.75 - 0.75 / 14)


def test_scores_do_not_depend_on_the_map_scale() -> None:
    plain, scaled = localization_scores(HEAT, MASK), localization_scores(HEAT * 7 + 3, MASK)
    assert plain.keys() == scaled.keys()
    for key, value in plain.items():
        assert scaled[key] == pytest.approx(value), key


def test_normalize_map_handles_constant_and_non_finite_maps() -> None:
    assert not normalize_map(np.full((3, 3), 2.0)).any()
    with_nan = np.array([[np.nan, 1.0], [3.0, 5.0]])
    assert normalize_map(with_nan).tolist() == [[0.0, 0.2], [0.6, 1.0]]


def test_bad_shapes_and_empty_masks_raise() -> None:
    with pytest.raises(InvalidInputError, match="one \\(H, W\\) shape"):
        localization_scores(HEAT, MASK[:3])
    with pytest.raises(InvalidInputError, match="at least one lesion pixel"):
        localization_scores(HEAT, np.zeros((4, 4), dtype=bool))


def test_size_tertiles() -> None:
    edges = size_edges(np.arange(1, 10) / 100)
    assert edges == (pytest.approx(0.0366667, rel=1e-4), pytest.approx(0.0633333, rel=1e-4))
    assert [size_bin(x / 100, edges) for x in (1, 3, 4, 6, 7, 9)] == [
        "small",
        "small",
        "medium",
        "medium",
        "large",
        "large",
    ]
