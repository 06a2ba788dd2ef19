"""Map post-processing: grad-cam's min-max normalization and bilinear resizing.

``normalize`` follows pytorch-grad-cam exactly: ``(cam - min) / (1e-7 + max(cam - min))`` per
image. A map resized to a requested size is normalized, resized (bilinear, half-pixel centres,
like OpenCV's INTER_LINEAR) and normalized again — what grad-cam returns at input size — so it
equals stock grad-cam's map when the requested size is the input size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["normalize", "resize", "scaled_map"]


def normalize(cam: np.ndarray) -> np.ndarray:
    """Min-max per 2-D map (leading axes are images)."""
    axes = (-2, -1)
    shifted = cam - cam.min(axis=axes, keepdims=True)
    return (shifted / (1e-7 + shifted.max(axis=axes, keepdims=True))).astype(np.float32)


def resize(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (..., h, w) maps to (..., H, W), no antialiasing, no corner alignment."""
    if cam.shape[-2:] == tuple(size):
        return cam.astype(np.float32)
    lead = cam.shape[:-2]
    t = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32)).reshape(
        -1, 1, *cam.shape[-2:]
    )
    out = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size).numpy()


def scaled_map(cam: np.ndarray, size: tuple[int, int] | None, normalized: bool) -> np.ndarray:
    """One raw CAM (h, w) -> the map a client asked for."""
    if size is None:
        return normalize(cam) if normalized else cam.astype(np.float32)
    if not normalized:
        return resize(cam, size)
    return normalize(resize(normalize(cam), size))
