"""The phantom's pneumothorax (and its chest-drain confounder).

The region is a real SIIM-ACR mask fitted into one lung field (:mod:`harness.phantom.siim_shapes`).
Inside it the lung markings are removed and the field is a little darker (more air); its
inner border, the visceral pleura, is drawn as a thin bright line just *outside* the region.
The ground-truth mask is exactly the region. Contrast distributions are in docs/phantom.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from harness.phantom.anatomy import Anatomy

__all__ = ["CONTRAST", "LINE_CONTRAST", "LesionSpec", "apply_lesion", "chest_tube", "sample_lesion"]

# Ranges of the darkening inside the region and of the pleural line (attenuation units, before
# the detector response) at ``lesion_contrast`` 1; the phantom's config scales both.
CONTRAST = (0.012, 0.06)
LINE_CONTRAST = (0.0, 0.072)


@dataclasses.dataclass(frozen=True)
class LesionSpec:
    side: int  # 1 = image-left lung, 2 = image-right lung
    source: str  # SIIM-ACR ImageId whose mask gave the shape
    source_area: float  # the real side mask's share of its image
    growth: float  # pixels the placed shape grew (< 0: shrank) to keep the real area
    contrast: float  # darkening inside the region (attenuation units)
    line_contrast: float  # brightness of the visceral pleural line


def sample_lesion(
    rng: np.random.Generator, *, side: int, source: str, source_area: float, scale: float
) -> LesionSpec:
    """Contrast and pleural line drawn uniformly from the ranges above, times ``scale``."""
    return LesionSpec(
        side=side,
        source=source,
        source_area=source_area,
        growth=0.0,
        contrast=float(rng.uniform(*CONTRAST)) * scale,
        line_contrast=float(rng.uniform(*LINE_CONTRAST)) * scale,
    )


def apply_lesion(anatomy: Anatomy, spec: LesionSpec, region: np.ndarray) -> Anatomy:
    """``anatomy`` with the pneumothorax ``region`` (bool, inside lung ``spec.side``) drawn in."""
    lung = anatomy.lung_labels == spec.side
    ring = ndimage.binary_dilation(region) & lung & ~region
    line = ndimage.gaussian_filter(ring.astype(np.float32), 0.5) * ~region
    base = (anatomy.base - spec.contrast * region + spec.line_contrast * line).astype(np.float32)
    markings = anatomy.markings * ~region
    return dataclasses.replace(anatomy, base=base, markings=markings)


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
