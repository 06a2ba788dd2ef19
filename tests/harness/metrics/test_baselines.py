"""Floors, ceilings, the calibrated score and the grid pointing game on hand-made maps.

The worked example of docs/metrics.md: a 6x6 image seen by a 3x3 grid (each cell 2x2 pixels)
and a lesion of 3 pixels in the top-left cell.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.metrics.baselines import (
    MIN_RANGE,
    calibrate,
    grid_pointing_game,
    mask_on_grid,
    reference_scores,
)
from ptxplain.imaging.preprocess import Geometry


def _identity(h: int, w: int) -> Geometry:
    return Geometry(h, w, h, w, 1.0, 0, 0, h, w)


def _lesion() -> np.ndarray:
    mask = np.zeros((6, 6), dtype=bool)
    mask[0, 0] = mask[0, 1] = mask[1, 0] = True
    return mask


def test_mask_on_grid_is_each_cells_lesion_share() -> None:
    cells = mask_on_grid(_lesion(), _identity(6, 6), (3, 3))
    expected = np.zeros((3, 3))
    expected[0, 0] = 0.75  # 3 of the cell's 4 pixels
    np.testing.assert_allclose(cells, expected)


def test_mask_on_grid_follows_the_letterbox_padding() -> None:
    # A 4x8 image in an 8x8 canvas: two rows of padding above and below; all lesion.
    geometry = Geometry(4, 8, 8, 8, 1.0, 2, 0, 4, 8)
    cells = mask_on_grid(np.ones((4, 8), dtype=bool), geometry, (2, 2))
    np.testing.assert_allclose(cells, np.full((2, 2), 0.5))  # each cell: 2 of its 4 rows


def test_grid_pointing_game_hits_misses_and_ties() -> None:
    cells = mask_on_grid(_lesion(), _identity(6, 6), (3, 3))
    hot = np.zeros((3, 3))
    hot[0, 0] = 1.0
    assert grid_pointing_game(hot, cells) == 1.0
    cold = np.zeros((3, 3))
    cold[2, 2] = 1.0
    assert grid_pointing_game(cold, cells) == 0.0
    tied = hot.copy()
    tied[1, 1] = 1.0
    assert grid_pointing_game(tied, cells) == 0.5  # two tied cells, one holds lesion
    assert grid_pointing_game(np.ones((3, 3)), cells) == pytest.approx(1 / 9)  # chance


def test_references_of_the_worked_example() -> None:
    refs = reference_scores(_lesion(), _identity(6, 6), (3, 3), seed=0)
    area = 3 / 36
    # Uniform heat: every pixel metric is the lesion's area share; grid PG 1 cell of 9.
    assert refs["uniform"]["effective_heat_ratio"] == pytest.approx(area)
    assert refs["uniform"]["energy_pointing_game"] == pytest.approx(area)
    assert refs["uniform"]["pointing_game"] == pytest.approx(area)
    assert refs["uniform"]["grid_pointing_game"] == pytest.approx(1 / 9)
    # The ideal 3x3 map peaks in the lesion's cell; upsampled, its heat spreads beyond the
    # lesion, so it beats the floor but stays far below the mask itself.
    ideal = refs["ideal"]
    assert ideal["grid_pointing_game"] == 1.0
    assert area < ideal["effective_heat_ratio"] < 1.0
    assert area < ideal["energy_pointing_game"] < 1.0
    assert refs["mask"] == {
        "effective_heat_ratio": 1.0,
        "energy_pointing_game": 1.0,
        "pointing_game": 1.0,
        "grid_pointing_game": 1.0,
    }
    assert 0.0 <= refs["random"]["grid_pointing_game"] <= 1.0


def test_a_finer_grid_has_a_higher_ceiling() -> None:
    mask = np.zeros((48, 48), dtype=bool)
    mask[4:10, 30:44] = True
    geometry = _identity(48, 48)
    coarse = reference_scores(mask, geometry, (3, 3), seed=0)["ideal"]
    fine = reference_scores(mask, geometry, (12, 12), seed=0)["ideal"]
    assert fine["effective_heat_ratio"] > 2 * coarse["effective_heat_ratio"]


def _row(raw: float, floor: float, ideal: float) -> dict[str, float]:
    metric = "effective_heat_ratio"
    return {
        metric: raw,
        f"uniform:{metric}": floor,
        f"random:{metric}": floor,
        f"ideal:{metric}": ideal,
        f"mask:{metric}": 1.0,
    }


def test_calibrated_score_is_a_ratio_of_means() -> None:
    # mean raw 0.06, floor 0.01, ideal 0.11: (0.06 - 0.01) / (0.11 - 0.01) = 0.5.
    rows = [_row(0.05, 0.01, 0.11), _row(0.07, 0.01, 0.11)]
    c = calibrate(rows, "effective_heat_ratio", n_boot=200)
    assert c.raw.estimate == pytest.approx(0.06)
    assert c.calibrated.estimate == pytest.approx(0.5)
    assert c.calibrated.low == pytest.approx(0.4) and c.calibrated.high == pytest.approx(0.6)
    assert c.references == pytest.approx(
        {"uniform": 0.01, "random": 0.01, "ideal": 0.11, "mask": 1.0}
    )
    assert c.resolvable
    # At the floor -> 0, at the ideal -> 1, below the floor -> negative.
    assert calibrate([_row(0.01, 0.01, 0.11)], "effective_heat_ratio").calibrated.estimate == 0
    assert calibrate([_row(0.11, 0.01, 0.11)], "effective_heat_ratio").calibrated.estimate == 1
    assert calibrate([_row(0.0, 0.01, 0.11)], "effective_heat_ratio").calibrated.estimate < 0


def test_a_grid_that_cannot_resolve_the_metric_gives_no_calibrated_score() -> None:
    rows = [_row(0.02, 0.01, 0.01 + MIN_RANGE / 2)]
    c = calibrate(rows, "effective_heat_ratio", n_boot=50)
    assert not c.resolvable
    assert math.isnan(c.calibrated.estimate)
    assert c.to_json()["calibrated"]["estimate"] is None
