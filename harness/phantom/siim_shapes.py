"""Pneumothorax shapes for the phantom, taken from the real SIIM-ACR masks.

The bank is every positive mask of the SIIM-ACR stage-1 training CSV that torchxrayvision ships
(2,669 images, :mod:`harness.data.siim_annotations`), read at phantom time from the installed
package. A positive phantom image takes one real mask and fits it into its own lung fields:

1. **Split by side.** Mask pixels left of the image's midline belong to the image-left lung,
   the others to the image-right one; a mask with pixels on both sides is bilateral (383 of the
   2,669), and each side becomes one lesion region (one CSV row).
2. **Placement.** Each side of the SIIM frame has a *reference hemithorax*: the superellipse
   (exponent 4) of :data:`REFERENCE_HEMITHORAX`, spanning the 0.2-99.8 % range of all SIIM mask
   pixels of that side (it holds 97 % of them; the test checks the constants against the data).
   A phantom lung pixel at angle ``t`` and relative radius ``rho`` (its distance from the lung's
   bounding-box centre over the lung edge's distance in that direction) samples the real mask
   at the same angle and relative radius of the reference. Apex maps to apex, lateral wall to
   lateral wall, and everything lands inside the phantom's lung field.
3. **Area kept.** The reference is larger than one patient's hemithorax (it spans every
   patient's), so the placed region is smaller than the real one; it is then grown into the
   lung by distance (the lung pixels nearest to it, so a crescent at the wall thickens inwards
   and along the wall) until it covers the same share of the image as the real side's mask did
   (as far as the lung can hold it); a placed region already too large keeps its core. So the
   lesion-area distribution is SIIM-ACR's, large lesions included, whatever the lung size.

Deterministic: the bank's order is the CSV's, and the phantom's generator picks the index.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy import ndimage

from harness.data.siim_annotations import SIIM_SHAPE, contains, read_annotations, span_pixels

__all__ = [
    "REFERENCE_HEMITHORAX",
    "ShapeBank",
    "SideShape",
    "coverage",
    "fit_to_lung",
    "load_bank",
]

# Per phantom side (1 = image-left, 2 = image-right): centre row, centre col, half-height,
# half-width, as fractions of the SIIM image side; superellipse exponent 4.
REFERENCE_HEMITHORAX = {1: (0.487, 0.272, 0.458, 0.224), 2: (0.497, 0.718, 0.466, 0.216)}
_EXPONENT = 4.0
_ANGLE_BINS = 72


@dataclasses.dataclass(frozen=True)
class SideShape:
    """One side of a real mask: its spans (SIIM frame) and its share of the image area."""

    side: int
    spans: np.ndarray = dataclasses.field(repr=False)
    area: float


@dataclasses.dataclass(frozen=True)
class ShapeBank:
    """Every real positive mask, split into its sides."""

    ids: tuple[str, ...]
    sides: tuple[tuple[SideShape, ...], ...]

    def __len__(self) -> int:
        return len(self.ids)


def _split(spans: np.ndarray) -> tuple[SideShape, ...]:
    rows, cols = SIIM_SHAPE
    midline = (cols // 2) * rows  # first flat index of the right half (column-major)
    left = spans[spans[:, 0] < midline].copy()
    right = spans[spans[:, 1] > midline].copy()
    if left.size:
        left[-1, 1] = min(int(left[-1, 1]), midline)
    if right.size:
        right[0, 0] = max(int(right[0, 0]), midline)
    parts = []
    for side, part in ((1, left), (2, right)):
        pixels = int((part[:, 1] - part[:, 0]).sum()) if part.size else 0
        if pixels:
            parts.append(SideShape(side, part, pixels / (rows * cols)))
    return tuple(parts)


@functools.lru_cache(maxsize=1)
def load_bank() -> ShapeBank:
    """The bank from the installed torchxrayvision's CSV (read once per process)."""
    annotations = read_annotations()
    return ShapeBank(annotations.positive_ids, tuple(_split(s) for s in annotations.spans))


def _reference_radius(side: int, angle: np.ndarray) -> np.ndarray:
    _, _, half_h, half_w = REFERENCE_HEMITHORAX[side]
    cos, sin = np.abs(np.cos(angle)), np.abs(np.sin(angle))
    return ((cos / half_w) ** _EXPONENT + (sin / half_h) ** _EXPONENT) ** (-1 / _EXPONENT)


@dataclasses.dataclass(frozen=True)
class _LungPolar:
    """A phantom lung's pixels in polar form about its bounding-box centre."""

    index: tuple[np.ndarray, np.ndarray]  # (rows, cols) of the lung pixels
    angle: np.ndarray
    rho: np.ndarray  # radius / the lung edge's radius at that angle (0..1]


def _lung_polar(lung: np.ndarray) -> _LungPolar:
    rows, cols = np.nonzero(lung)
    cy, cx = (rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2
    dy, dx = rows - cy, cols - cx
    angle, radius = np.arctan2(dy, dx), np.hypot(dy, dx) + 0.5
    bins = ((angle + np.pi) / (2 * np.pi) * _ANGLE_BINS).astype(np.int64) % _ANGLE_BINS
    edge = np.zeros(_ANGLE_BINS)
    np.maximum.at(edge, bins, radius)
    return _LungPolar((rows, cols), angle, np.clip(radius / edge[bins], 0.0, 1.0))


def _sample(shape: SideShape, polar: _LungPolar, offsets: np.ndarray) -> np.ndarray:
    """Which lung pixels touch the real mask: any of the sub-pixel ``offsets`` (in units of the
    pixel's relative radius) maps onto a mask pixel."""
    cy, cx, _, _ = REFERENCE_HEMITHORAX[shape.side]
    rows, cols = SIIM_SHAPE
    hit = np.zeros(polar.rho.shape, dtype=bool)
    for offset in offsets:
        radius = np.clip(polar.rho + offset, 0.0, 1.0) * _reference_radius(shape.side, polar.angle)
        src_r = np.clip(((cy + radius * np.sin(polar.angle)) * rows).astype(np.int64), 0, rows - 1)
        src_c = np.clip(((cx + radius * np.cos(polar.angle)) * cols).astype(np.int64), 0, cols - 1)
        hit |= contains(shape.spans, src_c * rows + src_r)
    return hit


def _match_area(placed: np.ndarray, lung: np.ndarray, target: int) -> tuple[np.ndarray, float]:
    """``placed`` grown into the lung (or shrunk to its core) to ``target`` pixels: the lung
    pixels nearest to it, resp. its pixels farthest from its border. Returns (region, signed
    distance in pixels: > 0 grown)."""
    target = int(np.clip(target, 1, lung.sum()))
    have = int(placed.sum())
    if have < target:
        distance = ndimage.distance_transform_edt(~placed)[lung]
        keep = np.argsort(distance, kind="stable")[:target]  # ties: raster order
        region = np.zeros(lung.shape, dtype=bool)
        region[tuple(axis[keep] for axis in np.nonzero(lung))] = True
        return region, float(distance[keep[-1]])
    depth = ndimage.distance_transform_edt(placed)[placed]
    keep = np.argsort(-depth, kind="stable")[:target]
    region = np.zeros(lung.shape, dtype=bool)
    region[tuple(axis[keep] for axis in np.nonzero(placed))] = True
    return region, -float(depth[keep[-1]])


def fit_to_lung(shape: SideShape, lung: np.ndarray) -> tuple[np.ndarray, float]:
    """The real side mask fitted into ``lung`` (bool) with the image-area share kept; returns
    (region, growth in pixels). Empty when the mask maps onto no pixel of this lung."""
    polar = _lung_polar(lung)
    step = 0.5 / max(1.0, float(np.sqrt(lung.sum() / np.pi)))  # ~half a pixel of radius
    placed = np.zeros(lung.shape, dtype=bool)
    placed[polar.index] = _sample(shape, polar, np.array([-step, 0.0, step]))
    if not placed.any():
        return placed, 0.0
    return _match_area(placed, lung, round(shape.area * lung.size))


def coverage(side: int, sample_every: int = 7) -> float:
    """The share of all SIIM mask pixels of ``side`` inside its reference hemithorax."""
    bank = load_bank()
    inside, total = 0, 0
    cy, cx, _, _ = REFERENCE_HEMITHORAX[side]
    for parts in bank.sides:
        for part in parts:
            if part.side != side:
                continue
            flat = span_pixels(part.spans)[::sample_every]
            dy = (flat % SIIM_SHAPE[0] + 0.5) / SIIM_SHAPE[0] - cy
            dx = (flat // SIIM_SHAPE[0] + 0.5) / SIIM_SHAPE[1] - cx
            limit = _reference_radius(side, np.arctan2(dy, dx))
            inside += int((np.hypot(dy, dx) <= limit).sum())
            total += flat.size
    return inside / total
