"""The value types of image decoding: the limits a request is decoded within, and its result."""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
from PIL import Image

from ptxplain.errors import ConfigError, ImageTooLargeError
from ptxplain.image_format import ImageFormat

__all__ = [
    "LUMA",
    "DecodeLimits",
    "DecodedImage",
    "ImageFormat",
    "IntensityMapping",
    "check_pixel_count",
]

# How source values were mapped to [0, 1].
IntensityMapping = Literal["bit_depth", "window", "voi_lut", "min_max"]
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as Pillow's "L"


@dataclasses.dataclass(frozen=True)
class DecodeLimits:
    """Caps on one request's image; checked before any pixel is decoded."""

    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 40_000_000

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"DecodeLimits.{name} must be a positive integer, got {value!r}")
        guard = Image.MAX_IMAGE_PIXELS
        if guard is not None and self.max_pixels > guard:
            raise ConfigError(
                f"DecodeLimits.max_pixels={self.max_pixels} exceeds Pillow's decompression-bomb "
                f"guard ({guard} pixels), which stays on"
            )


@dataclasses.dataclass(frozen=True)
class DecodedImage:
    """A decoded image and a description of its source. Never carries patient identifiers."""

    pixels: np.ndarray  # (H, W) float32 in [0, 1], bright = dense
    format: ImageFormat
    source_mode: str  # Pillow mode ("L", "I;16", "RGB", ...) or DICOM photometric interpretation
    original_dtype: str  # numpy dtype of the stored samples: "uint8", "uint16", "int16", ...
    bits_stored: int  # significant bits per sample in the source
    intensity_mapping: IntensityMapping
    window: tuple[float, float] | None = None  # DICOM (center, width) applied, if any
    photometric: str = ""  # DICOM Photometric Interpretation; "" for PNG / JPEG
    transfer_syntax: str = ""  # DICOM Transfer Syntax UID; "" for PNG / JPEG
    modality: str = ""  # DICOM Modality (e.g. "CR", "DX"); "" for PNG / JPEG
    frames: int = 1  # frames in the source; only the first is decoded

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def check_pixel_count(pixels: int, description: str, limits: DecodeLimits) -> None:
    if pixels > limits.max_pixels:
        raise ImageTooLargeError(
            f"image is {description} = {pixels} pixels, over the {limits.max_pixels}-pixel "
            "cap (max_pixels)"
        )


# --- PNG / JPEG -------------------------------------------------------------------------------
