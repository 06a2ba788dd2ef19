"""Geometry-preserving preprocessing: letterbox an image onto the model's square canvas, and lay
a map covering that canvas back onto the original image.

No crop, ever: the whole image is resized with its aspect ratio kept (longer side -> ``size``)
and padded with 0, centered. :class:`Geometry` records how canvas and original relate; it
mirrors the wire message ``ptxplain.v1.Geometry`` (protos/ptxplain/v1/result.proto).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ptxplain.errors import InvalidInputError
from ptxplain.v1 import result_pb2 as pb

__all__ = [
    "Geometry",
    "geometry_from_proto",
    "geometry_to_proto",
    "letterbox",
    "map_to_original",
    "to_model_input",
]


@dataclasses.dataclass(frozen=True)
class Geometry:
    """How the model's input canvas relates to the original image (see result.proto)."""

    original_height: int
    original_width: int
    input_height: int
    input_width: int
    scale: float  # input pixels per original pixel, the same on both axes
    pad_top: int
    pad_left: int
    content_height: int
    content_width: int

    def __post_init__(self) -> None:
        sizes = (self.original_height, self.original_width, self.content_height)
        if min(*sizes, self.content_width) < 1 or not self.scale > 0:
            raise InvalidInputError(f"geometry has an empty image or a non-positive scale: {self}")
        if (
            self.pad_top < 0
            or self.pad_left < 0
            or self.pad_top + self.content_height > self.input_height
            or self.pad_left + self.content_width > self.input_width
        ):
            raise InvalidInputError(f"geometry's content box lies outside the input canvas: {self}")


def _content_size(height: int, width: int, size: int) -> tuple[float, int, int]:
    scale = size / max(height, width)
    content_height = min(size, max(1, int(height * scale + 0.5)))
    content_width = min(size, max(1, int(width * scale + 0.5)))
    return scale, content_height, content_width


def _as_image_tensor(array: np.ndarray) -> torch.Tensor:
    """(h, w) array -> (1, 1, h, w) float32 tensor; read-only arrays (np.frombuffer) are copied."""
    values = np.ascontiguousarray(array, dtype=np.float32)
    if not values.flags.writeable:
        values = values.copy()
    return torch.from_numpy(values)[None, None]


def _resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize of a (1, 1, h, w) tensor; antialiased (a no-op when upsampling)."""
    return F.interpolate(
        image, size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )


def letterbox(pixels: np.ndarray, size: int) -> tuple[torch.Tensor, Geometry]:
    """Resize the whole (H, W) image so its longer side is ``size`` and pad it, centered, with 0.

    Returns the (size, size) float32 canvas and its :class:`Geometry`.
    """
    if pixels.ndim != 2 or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise InvalidInputError(f"letterbox needs a non-empty (H, W) image, got {pixels.shape}")
    if size < 1:
        raise InvalidInputError(f"letterbox size must be >= 1, got {size}")
    height, width = (int(n) for n in pixels.shape)
    scale, content_height, content_width = _content_size(height, width, size)
    pad_top, pad_left = (size - content_height) // 2, (size - content_width) // 2
    content = _resize(_as_image_tensor(pixels), content_height, content_width)[0, 0]
    canvas = torch.zeros((size, size), dtype=torch.float32)
    canvas[pad_top : pad_top + content_height, pad_left : pad_left + content_width] = content
    geometry = Geometry(
        original_height=height,
        original_width=width,
        input_height=size,
        input_width=size,
        scale=scale,
        pad_top=pad_top,
        pad_left=pad_left,
        content_height=content_height,
        content_width=content_width,
    )
    return canvas, geometry


def to_model_input(
    canvas: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """The (size, size) gray canvas as a normalized (3, size, size) tensor (gray replicated)."""
    if canvas.ndim != 2:
        raise InvalidInputError(f"to_model_input needs a (H, W) canvas, got {tuple(canvas.shape)}")
    if len(mean) != 3 or len(std) != 3 or min(abs(s) for s in std) == 0:
        raise InvalidInputError(f"mean and std need 3 values each, std non-zero: {mean}, {std}")
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (canvas.to(torch.float32).unsqueeze(0) - mean_t) / std_t


def map_to_original(map2d: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Lay a map covering the whole input canvas (any resolution) onto the original image.

    Resize to the input size, crop the content box, resize the crop to the original size.
    Returns a float32 (original_height, original_width) array.
    """
    if map2d.ndim != 2 or map2d.shape[0] < 1 or map2d.shape[1] < 1:
        raise InvalidInputError(f"map_to_original needs a non-empty (h, w) map, got {map2d.shape}")
    g = geometry
    values = _as_image_tensor(map2d)
    if tuple(values.shape[-2:]) != (g.input_height, g.input_width):
        values = _resize(values, g.input_height, g.input_width)
    top, left = g.pad_top, g.pad_left
    content = values[..., top : top + g.content_height, left : left + g.content_width]
    return _resize(content, g.original_height, g.original_width)[0, 0].numpy()


def geometry_to_proto(geometry: Geometry) -> pb.Geometry:
    """The wire message for ``geometry``."""
    return pb.Geometry(**dataclasses.asdict(geometry))


def geometry_from_proto(message: pb.Geometry) -> Geometry:
    """A :class:`Geometry` from its wire message (validated)."""
    values = {field.name: getattr(message, field.name) for field in dataclasses.fields(Geometry)}
    values["scale"] = float(values["scale"])
    return Geometry(**values)
