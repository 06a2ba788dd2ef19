"""Image bytes to one grayscale float32 array in [0, 1], bright = dense; PNG, JPEG and DICOM.

The format is sniffed from magic bytes, never from a file name or content type. PNG and JPEG
go through Pillow with its decompression-bomb guard left on; DICOM (Part 10 files only: a
128-byte preamble then ``DICM``) goes through :mod:`ptxplain.imaging.dicom`. Sizes are checked
against :class:`DecodeLimits` before any pixel is decoded. Every failure is a
:class:`~ptxplain.errors.DecodeError` or :class:`~ptxplain.errors.ImageTooLargeError` that names
the problem. See docs/decoding.md for the rules.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ptxplain.errors import DecodeError, ImageTooLargeError, PtxplainError
from ptxplain.image_format import ImageFormat, sniff_format
from ptxplain.imaging.dicom import decode_dicom_bytes, decode_dicom_dataset
from ptxplain.imaging.types import (
    DecodedImage,
    DecodeLimits,
    IntensityMapping,
    check_pixel_count,
)

__all__ = [
    "DecodeLimits",
    "DecodedImage",
    "ImageFormat",
    "IntensityMapping",
    "decode_dicom_dataset",
    "decode_image",
    "sniff_format",
]

_PILLOW_FORMAT = {"png": "PNG", "jpeg": "JPEG"}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def decode_image(data: bytes, *, limits: DecodeLimits) -> DecodedImage:
    """Decode one request body (PNG, JPEG or DICOM) within ``limits``."""
    if not data:
        raise DecodeError("empty body")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(
            f"body is {len(data)} bytes, over the {limits.max_bytes}-byte cap (max_bytes)"
        )
    data = bytes(data)
    image_format = sniff_format(data)
    if image_format == "dicom":
        return decode_dicom_bytes(data, limits)
    return _decode_with_pillow(data, image_format, limits)


def _decode_with_pillow(
    data: bytes, image_format: ImageFormat, limits: DecodeLimits
) -> DecodedImage:
    name = _PILLOW_FORMAT[image_format]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[name]) as image:
                width, height = image.size
                if width == 0 or height == 0:
                    raise DecodeError(f"zero-sized {name} image ({width}x{height})")
                check_pixel_count(width * height, f"{width}x{height}", limits)
                image.load()
                return _pillow_to_decoded(_apply_exif_orientation(image), image_format)
    except PtxplainError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageTooLargeError(
            f"{name} image rejected by Pillow's decompression-bomb guard: {exc}"
        ) from exc
    except UnidentifiedImageError as exc:
        raise DecodeError(_unidentified_message(data, name)) from exc
    except Exception as exc:
        raise DecodeError(f"corrupt or truncated {name} image: {exc}") from exc


def _unidentified_message(data: bytes, name: str) -> str:
    if name == "PNG" and data[12:16] == b"IHDR" and len(data) >= 24:
        width = int.from_bytes(data[16:20], "big")
        height = int.from_bytes(data[20:24], "big")
        if width == 0 or height == 0:
            return f"zero-sized PNG image ({width}x{height})"
    return f"corrupt {name} image: Pillow cannot read its header"


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Turn the image as a viewer would (EXIF Orientation 2..8); unchanged otherwise."""
    orientation = image.getexif().get(0x0112, 1)
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(image)
    return image


def _pillow_to_decoded(image: Image.Image, image_format: ImageFormat) -> DecodedImage:
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        pixels = np.asarray(image).astype(np.float32)
        if mode == "I":  # 32-bit signed container: keep to the 16-bit range
            np.clip(pixels, 0.0, 65535.0, out=pixels)
        pixels *= np.float32(1.0 / 65535.0)
        bits, dtype = 16, "uint16"
    else:
        gray = image if mode == "L" else image.convert("L")
        pixels = np.asarray(gray).astype(np.float32)
        pixels *= np.float32(1.0 / 255.0)
        bits, dtype = (1, "bool") if mode == "1" else (8, "uint8")
    return DecodedImage(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        format=image_format,
        source_mode=mode,
        original_dtype=dtype,
        bits_stored=bits,
        intensity_mapping="bit_depth",
    )
