"""Floors and ceilings of the localization metrics at a model's own CAM grid, and the
calibrated score ``(raw - floor) / (ideal - floor)``.

A raw localization score cannot be compared across architectures: its ceiling depends on the
grid the map is computed on (an ideal 3x3 map reaches a far lower effective heat ratio than an
ideal 14x14 one). So every image is scored, per grid and geometry, with four reference maps:

* ``uniform`` — the same heat everywhere (the floor): every pixel metric then equals the lesion's
  area fraction (ties count by share), the grid pointing game the share of cells with lesion;
* ``random`` — i.i.d. uniform values on the model's grid, laid onto the image like a served map
  (the mean of :data:`RANDOM_DRAWS` seeded draws);
* ``ideal`` — the mask area-pooled to the model's grid (each cell: its share of lesion pixels)
  and upsampled the way the server's maps are (the ceiling at that grid);
* ``mask`` — the mask itself (the ceiling at full resolution).

The *grid pointing game* asks whether the map's hottest grid cell holds lesion pixels (ties:
the share of tied cells that do); on a coarse grid the pixel pointing game is degenerate (an
upsampled 3x3 map has a flat maximum). docs/metrics.md has the definitions and a worked example.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.metrics.localization import (
    effective_heat_ratio,
    energy_pointing_game,
    normalize_map,
    pointing_game,
)
from harness.metrics.stats import IndexStatistic, Interval, bootstrap_interval

__all__ = [
    "CALIBRATED_METRICS",
    "MIN_RANGE",
    "RANDOM_DRAWS",
    "REFERENCES",
    "Calibration",
    "calibrate",
    "calibrated_statistic",
    "grid_pointing_game",
    "mask_on_grid",
    "reference_scores",
]

REFERENCES = ("uniform", "random", "ideal", "mask")
CALIBRATED_METRICS = (
    "effective_heat_ratio",
    "grid_pointing_game",
    "energy_pointing_game",
    "pointing_game",
)
RANDOM_DRAWS = 4
MIN_RANGE = 0.01  # ideal - floor below this: the grid cannot resolve the metric


def mask_on_grid(mask: np.ndarray, geometry: Any, grid: tuple[int, int]) -> np.ndarray:
    """Each grid cell's share of lesion pixels: the mask laid into the model's input canvas
    (letterbox scale and padding of ``geometry``) and area-pooled to ``grid``."""
    import torch
    import torch.nn.functional as F

    g = geometry
    values = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
    content = F.interpolate(values, size=(g.content_height, g.content_width), mode="area")
    canvas = torch.zeros(1, 1, g.input_height, g.input_width)
    top, left = g.pad_top, g.pad_left
    canvas[..., top : top + g.content_height, left : left + g.content_width] = content
    return F.adaptive_avg_pool2d(canvas, grid)[0, 0].numpy().astype(np.float64)


def grid_pointing_game(native: np.ndarray, cells: np.ndarray) -> float:
    """1 when the map's hottest grid cell holds lesion pixels, 0 when not; with ties, the share
    of the tied cells that do."""
    values = np.nan_to_num(np.asarray(native, dtype=np.float64))
    peak = values == values.max()
    return float(np.count_nonzero(peak & (cells > 0))) / float(np.count_nonzero(peak))


def _pixel_scores(norm: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    return {
        "effective_heat_ratio": effective_heat_ratio(norm, mask),
        "energy_pointing_game": energy_pointing_game(norm, mask),
        "pointing_game": pointing_game(norm, mask),
    }


def _scores_of(
    native: np.ndarray, cells: np.ndarray, mask: np.ndarray, geometry: Any
) -> dict[str, float]:
    from ptxplain.imaging.preprocess import map_to_original

    norm = normalize_map(map_to_original(native, geometry))
    return {**_pixel_scores(norm, mask), "grid_pointing_game": grid_pointing_game(native, cells)}


def reference_scores(
    mask: np.ndarray, geometry: Any, grid: tuple[int, int], seed: int
) -> dict[str, dict[str, float]]:
    """Every metric of :data:`CALIBRATED_METRICS` for each of :data:`REFERENCES` on one image."""
    mask = np.asarray(mask, dtype=bool)
    cells = mask_on_grid(mask, geometry, grid)
    uniform = {
        **_pixel_scores(np.ones(mask.shape), mask),
        "grid_pointing_game": grid_pointing_game(np.ones(grid), cells),
    }
    rng = np.random.default_rng(seed)
    draws = [_scores_of(rng.random(grid), cells, mask, geometry) for _ in range(RANDOM_DRAWS)]
    random = {m: float(np.mean([d[m] for d in draws])) for m in CALIBRATED_METRICS}
    exact = {
        **_pixel_scores(mask.astype(np.float64), mask),
        "grid_pointing_game": grid_pointing_game(cells, cells),
    }
    return {
        "uniform": uniform,
        "random": random,
        "ideal": _scores_of(cells, cells, mask, geometry),
        "mask": exact,
    }


@dataclasses.dataclass(frozen=True)
class Calibration:
    """One metric of one model: raw mean, the references' means and the calibrated score."""

    raw: Interval
    references: dict[str, float]
    calibrated: Interval
    resolvable: bool  # ideal - floor >= MIN_RANGE

    def to_json(self) -> dict[str, Any]:
        return {
            "raw": self.raw.to_json(),
            "references": {
                k: None if not math.isfinite(v) else v for k, v in self.references.items()
            },
            "calibrated": self.calibrated.to_json(),
            "resolvable": self.resolvable,
        }


def _calibrated_of(raw: np.ndarray, floor: np.ndarray, ideal: np.ndarray) -> IndexStatistic:
    def statistic(idx: np.ndarray) -> float:
        span = float(ideal[idx].mean() - floor[idx].mean())
        if span < MIN_RANGE:
            return float("nan")
        return float(raw[idx].mean() - floor[idx].mean()) / span

    return statistic


def calibrate(
    rows: Sequence[Mapping[str, Any]], metric: str, *, n_boot: int = 1000, seed: int = 0
) -> Calibration:
    """Raw, references and calibrated score of ``metric`` over scored rows (each row holds the
    raw score under ``metric`` and the references under ``"<reference>:<metric>"``).

    The calibrated score is a ratio of means, ``(mean raw - mean floor) / (mean ideal - mean
    floor)`` with the uniform map as the floor; its interval resamples images."""
    raw = np.array([r[metric] for r in rows], dtype=float)
    refs = {
        name: np.array([r[f"{name}:{metric}"] for r in rows], dtype=float) for name in REFERENCES
    }
    statistic = _calibrated_of(raw, refs["uniform"], refs["ideal"])
    raw_interval = bootstrap_interval(
        lambda idx: float(raw[idx].mean()), raw.size, n_boot=n_boot, seed=seed
    )
    calibrated = bootstrap_interval(statistic, raw.size, n_boot=n_boot, seed=seed)
    means = {name: float(v.mean()) if v.size else float("nan") for name, v in refs.items()}
    span = means["ideal"] - means["uniform"]
    return Calibration(raw_interval, means, calibrated, bool(raw.size and span >= MIN_RANGE))


def calibrated_statistic(rows: Sequence[Mapping[str, Any]], metric: str) -> IndexStatistic:
    """The calibrated score of ``metric`` as a function of image indices into ``rows``."""
    raw = np.array([r[metric] for r in rows], dtype=float)
    floor = np.array([r[f"uniform:{metric}"] for r in rows], dtype=float)
    ideal = np.array([r[f"ideal:{metric}"] for r in rows], dtype=float)
    return _calibrated_of(raw, floor, ideal)
