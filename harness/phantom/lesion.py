"""The phantom's pneumothorax (and its chest-drain confounder).

A pneumothorax is a crescent of one lung field along its apex or lateral edge: the pixels
whose distance to the lung's edge is below a depth profile that peaks mid-sector and tapers to
zero at the sector's ends. Inside it the lung markings are removed and the field is a little
darker (more air); its inner border, the visceral pleura, is drawn as a thin bright line just
*outside* the region. The ground-truth mask is exactly the region. Distributions are in
docs/phantom.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from harness.phantom.anatomy import Anatomy

__all__ = ["LesionSpec", "apply_lesion", "chest_tube", "sample_lesion"]

_SITES = {"apex": (0.0, 0.3), "lateral": (0.6, 1.0)}


@dataclasses.dataclass(frozen=True)
class LesionSpec:
    side: int  # 1 = image-left lung, 2 = image-right lung
    site: str  # "apex" or "lateral"
    direction: float  # radians from the lung centre; 0 = image right, -pi/2 = up
    half_angle: float  # radians: half the angular extent of the crescent
    depth: float  # pixels: the crescent's maximum thickness
    contrast: float  # darkening inside the region (attenuation units)
    line_contrast: float  # brightness of the visceral pleural line


def sample_lesion(rng: np.random.Generator, side: int, size: int, scale: float) -> LesionSpec:
    """One crescent: site 50/50, depth log-uniform 1%..8% of the patient size."""
    site = "apex" if rng.random() < 0.5 else "lateral"
    lateral = np.pi if side == 1 else 0.0
    up = -np.pi / 2
    frac = float(rng.uniform(*_SITES[site]))
    return LesionSpec(
        side=side,
        site=site,
        direction=up + frac * float(_wrap(lateral - up)),
        half_angle=float(rng.uniform(0.5, 1.2)),
        depth=float(np.exp(rng.uniform(np.log(0.01), np.log(0.08)))) * size * scale,
        contrast=float(rng.uniform(0.02, 0.07)),
        line_contrast=float(rng.uniform(0.04, 0.1)),
    )


def _wrap(angle: np.ndarray | float) -> np.ndarray:
    return np.asarray((np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi)


def _region(anatomy: Anatomy, spec: LesionSpec, depth: float) -> np.ndarray:
    lung = anatomy.lung_labels == spec.side
    rows, cols = np.indices(lung.shape, dtype=np.float32)
    cy, cx = anatomy.lung_centres[spec.side - 1]
    offset = _wrap(np.arctan2(rows - cy, cols - cx) - spec.direction)
    profile = np.clip(np.cos(0.5 * np.pi * offset / spec.half_angle), 0.0, 1.0) ** 0.6
    profile[np.abs(offset) > spec.half_angle] = 0.0
    inside = ndimage.distance_transform_edt(lung)
    return lung & (inside < depth * profile)


def lesion_region(anatomy: Anatomy, spec: LesionSpec, min_pixels: int) -> np.ndarray:
    """The crescent; grown (depth x1.5, at most 6 times) until it has ``min_pixels``."""
    depth = spec.depth
    for _ in range(6):
        region = _region(anatomy, spec, depth)
        if int(region.sum()) >= min_pixels:
            return region
        depth *= 1.5
    return region


def apply_lesion(anatomy: Anatomy, spec: LesionSpec, min_pixels: int) -> tuple[Anatomy, np.ndarray]:
    """``anatomy`` with the pneumothorax drawn in, and its exact mask."""
    region = lesion_region(anatomy, spec, min_pixels)
    lung = anatomy.lung_labels == spec.side
    ring = ndimage.binary_dilation(region) & lung & ~region
    line = ndimage.gaussian_filter(ring.astype(np.float32), 0.5) * ~region
    base = (anatomy.base - spec.contrast * region + spec.line_contrast * line).astype(np.float32)
    markings = anatomy.markings * ~region
    return dataclasses.replace(anatomy, base=base, markings=markings), region


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def chest_tube(
    rng: np.random.Generator, anatomy: Anatomy, side: int, keep_out: np.ndarray
) -> np.ndarray:
    """A radio-opaque drain entering the lateral chest wall low, curving up; never in ``keep_out``."""
    lung = anatomy.lung_labels == side
    rows, cols = np.nonzero(lung)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    outer = left - 0.45 * (right - left) if side == 1 else right + 0.45 * (right - left)
    inner = (left + right) / 2 + rng.uniform(-0.1, 0.1) * (right - left)
    entry_row = top + rng.uniform(0.6, 0.8) * (bottom - top)
    p0 = np.array([entry_row + rng.uniform(0, 10), outer])
    p1 = np.array([entry_row, inner])
    p2 = np.array([top + rng.uniform(0.25, 0.45) * (bottom - top), inner])
    size = lung.shape[0]
    points = np.rint(_bezier(p0, p1, p2, 4 * size)).astype(np.int64)
    points = points[((points >= 0) & (points < size)).all(axis=1)]
    centre = np.ones(lung.shape, dtype=bool)
    centre[points[:, 0], points[:, 1]] = False
    distance = ndimage.distance_transform_edt(centre)
    wall = np.clip(2.2 - distance, 0.0, 1.0) * np.where(distance < 0.8, 0.7, 1.0)
    blocked = ndimage.binary_dilation(keep_out, iterations=2)
    return (wall * ~blocked).astype(np.float32)
