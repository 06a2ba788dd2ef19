"""X-ray augmentation on letterboxed canvases, batched and driven by an explicit generator.

Geometry: a small random rotation, shift and isotropic scale (one affine warp, bilinear, zeros
outside: the letterbox padding stays 0 as in serving). Intensity, on the image content only:
gamma, contrast about the content mean, brightness, Gaussian noise, then a clamp to [0, 1].

No horizontal flip by default: a radiograph's left and right are not interchangeable (heart,
aortic arch, side markers), and a flipped chest is an anatomy the model never meets in use.
Pneumothorax occurs on both sides, so the labels need no flip for balance. ``hflip=True`` is
there for data sets where laterality carries nothing.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from ptxplain.errors import InvalidOptionError

__all__ = ["AugmentConfig", "augment_batch"]


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Ranges of each random transform; ``enabled=False`` passes canvases through."""

    enabled: bool = True
    rotate_deg: float = 7.0
    shift: float = 0.05  # fraction of the canvas side, each axis
    scale: tuple[float, float] = (0.92, 1.08)
    gamma: tuple[float, float] = (0.8, 1.25)
    contrast: tuple[float, float] = (0.85, 1.15)
    brightness: float = 0.06
    noise_std: float = 0.015
    hflip: bool = False

    def __post_init__(self) -> None:
        for name in ("scale", "gamma", "contrast"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise InvalidOptionError(f"augment {name} range must be 0 < low <= high")
        if min(self.rotate_deg, self.shift, self.brightness, self.noise_std) < 0:
            raise InvalidOptionError("augment rotate/shift/brightness/noise must be >= 0")


def _uniform(low: float, high: float, n: int, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _affine(config: AugmentConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) sampling matrices for ``F.affine_grid`` (output -> input coordinates)."""
    angle = _uniform(-config.rotate_deg, config.rotate_deg, n, generator) * (math.pi / 180)
    scale = _uniform(*config.scale, n, generator)
    shift = _uniform(-2 * config.shift, 2 * config.shift, 2 * n, generator).view(n, 2)
    flip = torch.ones(n)
    if config.hflip:
        flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([cos * flip, -sin, shift[:, 0], sin * flip, cos, shift[:, 1]], dim=1)
    return theta.view(n, 2, 3)


def _warp(canvas: torch.Tensor, content: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    stacked = torch.stack([canvas, content], dim=1)
    grid = F.affine_grid(theta, list(stacked.shape), align_corners=False)
    return F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _intensity(
    image: torch.Tensor, inside: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    n = image.shape[0]
    gamma = _uniform(*config.gamma, n, generator).view(n, 1, 1)
    contrast = _uniform(*config.contrast, n, generator).view(n, 1, 1)
    brightness = _uniform(-config.brightness, config.brightness, n, generator).view(n, 1, 1)
    noise = torch.randn(image.shape, generator=generator) * config.noise_std
    image = image.clamp(0.0, 1.0) ** gamma
    area = inside.sum(dim=(1, 2), keepdim=True).clamp_min(1.0)
    mean = (image * inside).sum(dim=(1, 2), keepdim=True) / area
    image = (image - mean) * contrast + mean + brightness + noise
    return image.clamp(0.0, 1.0) * inside


def augment_batch(
    canvases: torch.Tensor,
    content: torch.Tensor,
    config: AugmentConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Augmented copies of (B, H, W) canvases; ``content`` marks the image (1) vs padding (0)."""
    if not config.enabled:
        return canvases.clone()
    warped = _warp(canvases, content, _affine(config, canvases.shape[0], generator))
    inside = (warped[:, 1] > 0.5).to(canvases.dtype)
    return _intensity(warped[:, 0], inside, config, generator)
