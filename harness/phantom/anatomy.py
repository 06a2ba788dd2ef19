"""Anatomy of the synthetic chest radiograph: body, lungs, vessels, ribs, heart, diaphragm.

Everything is drawn as an *attenuation-like* map (bright = dense) on a normalised grid whose
unit is the image side; patient size and position move that grid. Layers are returned apart so
the lesion code (:mod:`harness.phantom.lesion`) can remove lung markings inside a
pneumothorax before they are summed. All functions are vectorised numpy / scipy.ndimage.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

__all__ = ["Anatomy", "Geometry", "draw_anatomy", "sample_geometry", "vessel_tree"]


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where the patient is in the image (fractions of the image side)."""

    size: int
    scale: float  # patient size relative to the field of view
    shift_x: float
    shift_y: float
    body_width: float  # half-width of the torso / scale
    lung_height: float  # half-height of a lung / scale
    heart_size: float
    dome_right: float  # vertical offset of the image-left hemidiaphragm
    rib_period: float


def sample_geometry(
    patient_rng: np.random.Generator, image_rng: np.random.Generator, size: int
) -> Geometry:
    """Body habitus from the patient's generator, position from the image's."""
    return Geometry(
        size=size,
        scale=float(patient_rng.uniform(0.9, 1.15)),
        body_width=float(patient_rng.uniform(0.40, 0.50)),
        lung_height=float(patient_rng.uniform(0.27, 0.32)),
        heart_size=float(patient_rng.uniform(0.11, 0.15)),
        dome_right=float(patient_rng.uniform(-0.03, 0.0)),
        rib_period=float(patient_rng.uniform(0.062, 0.078)),
        shift_x=float(image_rng.uniform(-0.06, 0.06)),
        shift_y=float(image_rng.uniform(-0.06, 0.08)),
    )


@dataclasses.dataclass(frozen=True)
class Anatomy:
    """Layers of one radiograph (each ``size`` x ``size`` float32 unless noted)."""

    base: np.ndarray  # body, lungs, heart, mediastinum, ribs — no lung markings
    markings: np.ndarray  # vessels + parenchymal texture, already limited to the lungs
    lungs: np.ndarray  # bool: lung fields
    lung_labels: np.ndarray  # int: 0 outside, 1 image-left lung, 2 image-right lung
    lung_centres: tuple[tuple[float, float], tuple[float, float]]  # (row, col) px per lung
    body: np.ndarray  # bool: inside the body outline


def _grid(g: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (u right, v down) in patient units, centred on the chest."""
    axis = (np.arange(g.size, dtype=np.float32) + 0.5) / g.size - 0.5
    v, u = np.meshgrid(axis - g.shift_y, axis - g.shift_x, indexing="ij")
    return u / g.scale, v / g.scale


def _superellipse(u: np.ndarray, v: np.ndarray, a: float, b: float, p: float) -> np.ndarray:
    return np.abs(u / a) ** p + np.abs(v / b) ** p


def _body(u: np.ndarray, v: np.ndarray, g: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Torso (open at the bottom) plus neck; returns (bool mask, thickness 0..1)."""
    torso = _superellipse(u, v - 0.16, g.body_width, 0.6, 3.0)
    neck = _superellipse(u, v + 0.5, 0.1, 0.16, 2.0)
    r = np.minimum(torso, neck)
    return r < 1.0, np.sqrt(np.clip(1.0 - r, 0.0, 1.0))


def _lung_fields(u: np.ndarray, v: np.ndarray, g: Geometry) -> np.ndarray:
    """Label map of the two lungs (ellipses), each cut below by its hemidiaphragm dome."""
    labels = np.zeros(u.shape, dtype=np.int8)
    widen = g.body_width / 0.45
    for side, sign in ((1, -1.0), (2, 1.0)):
        lateral = (u - sign * 0.19 * widen) * sign  # > 0 towards the chest wall
        width = np.where(lateral > 0, 0.16, 0.11) * widen
        ellipse = (lateral / width) ** 2 + ((v + 0.04) / g.lung_height) ** 2
        lift = g.dome_right if side == 1 else 0.0
        dome = 0.5 * g.lung_height + lift + 1.5 * lateral**2
        labels[(ellipse < 1.0) & (v < dome)] = side
    return labels


def _ribs(u: np.ndarray, v: np.ndarray, g: Geometry, body: np.ndarray) -> np.ndarray:
    """Posterior ribs (curving down laterally) and clavicles, as 0..1 bands."""
    phase = (v + 0.5 * np.abs(u) - 0.9 * u**2) / g.rib_period
    bands = np.clip((np.cos(2 * np.pi * phase) - 0.35) / 0.65, 0.0, 1.0)
    bands *= np.clip((np.abs(u) - 0.03) / 0.05, 0.0, 1.0)
    in_cage = np.clip((0.32 - v) / 0.06, 0, 1) * np.clip((v + 0.38) / 0.04, 0, 1) * body
    clavicle = np.exp(-(((v + 0.36 - 0.25 * np.abs(u)) / 0.018) ** 2)) * (np.abs(u) < 0.3)
    return bands * in_cage + clavicle * body


def _soft(mask: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(mask.astype(np.float32), sigma)


def vessel_tree(
    rng: np.random.Generator,
    root: tuple[float, float],
    angles: np.ndarray,
    length: float,
    size: int,
) -> np.ndarray:
    """Branching vessels from ``root`` (row, col px): each generation splits every branch in two.

    Returns an image of deposited vessel density (thicker, denser near the hilum).
    """
    image = np.zeros((size, size), dtype=np.float32)
    pos = np.tile(np.asarray(root, dtype=np.float64), (angles.size, 1))
    theta = angles.astype(np.float64)
    for gen in range(7):
        seg = length * 0.78**gen * rng.uniform(0.7, 1.2, theta.size)
        steps = np.linspace(0.0, 1.0, max(2, int(seg.max()) + 1))
        direction = np.stack([np.sin(theta), np.cos(theta)], axis=1) * seg[:, None]
        points = pos[:, None, :] + steps[None, :, None] * direction[:, None, :]
        _deposit(image, points.reshape(-1, 2), weight=0.82**gen)
        pos = pos + direction
        spread = rng.uniform(0.25, 0.5, theta.size)
        theta = np.concatenate([theta - spread, theta + spread]) + rng.normal(
            0, 0.1, 2 * theta.size
        )
        pos = np.concatenate([pos, pos])
    return image


def _deposit(image: np.ndarray, points: np.ndarray, weight: float) -> None:
    idx = np.rint(points).astype(np.int64)
    keep = (idx >= 0).all(axis=1) & (idx < image.shape[0]).all(axis=1)
    idx = idx[keep]
    np.add.at(image, (idx[:, 0], idx[:, 1]), weight)


def _markings(
    rng: np.random.Generator, g: Geometry, labels: np.ndarray
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Vessels from each hilum plus fine parenchymal texture, limited to the lung fields."""
    vessels = np.zeros(labels.shape, dtype=np.float32)
    centres = []
    for side in (1, 2):
        rows, cols = np.nonzero(labels == side)
        centre = (float(rows.mean()), float(cols.mean()))
        centres.append(centre)
        medial = 1.0 if side == 1 else -1.0  # direction towards the midline, in columns
        hilum = (
            centre[0] + 0.02 * g.size * g.scale,
            centre[1] + medial * 0.5 * (cols.max() - cols.min()) * 0.6,
        )
        outward = np.pi if side == 1 else 0.0
        angles = outward + medial * np.array([-1.2, -0.55, 0.0, 0.55, 1.2]) * -1.0
        vessels += vessel_tree(rng, hilum, angles, 0.09 * g.size * g.scale, g.size)
    fine = ndimage.gaussian_filter(vessels, 0.7)
    coarse = ndimage.gaussian_filter(vessels, 1.5)
    texture = ndimage.gaussian_filter(rng.standard_normal(labels.shape).astype(np.float32), 1.2)
    lung_soft = _soft(labels > 0, 1.0)
    marks = np.clip(0.55 * fine + 0.6 * coarse, 0.0, 1.0) * 0.16 + 0.03 * texture
    return marks * lung_soft, centres


def draw_anatomy(rng: np.random.Generator, g: Geometry) -> Anatomy:
    """All layers of one chest: ``base + markings`` is the lesion-free attenuation map."""
    u, v = _grid(g)
    body, thickness = _body(u, v, g)
    labels = _lung_fields(u, v, g)
    lungs = labels > 0
    heart = _superellipse(u - 0.07, v - 0.13, g.heart_size * 1.2, g.heart_size, 2.0) < 1.0
    mediastinum = np.exp(-((u / 0.07) ** 2)) * (v > -0.5)
    spine = np.exp(-((u / 0.035) ** 2)) * (0.7 + 0.3 * np.cos(2 * np.pi * v / 0.06))
    abdomen = np.clip((v - 0.2) / 0.2, 0.0, 1.0)
    base = (
        0.42 * _soft(body, 1.0) * (0.6 + 0.4 * thickness)
        - 0.30 * _soft(lungs, 1.2)
        + 0.16 * _soft(heart, 3.0)
        + (0.12 * mediastinum + 0.1 * spine + 0.06 * abdomen) * body
        + 0.07 * _ribs(u, v, g, body)
    )
    marks, centres = _markings(rng, g, labels)
    return Anatomy(
        base=base.astype(np.float32),
        markings=marks.astype(np.float32),
        lungs=lungs,
        lung_labels=labels,
        lung_centres=(centres[0], centres[1]),
        body=body,
    )
