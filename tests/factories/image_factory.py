"""Build PNG / JPEG bytes for tests, including malformed ones (no binary fixtures committed)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

__all__ = ["all_zero_png", "chunk", "gradient", "pillow_bytes", "raw_png"]


def pillow_bytes(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def gradient(height: int = 32, width: int = 48, top: int = 255) -> np.ndarray:
    return np.linspace(0, top, height * width).reshape(height, width)


def chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def raw_png(width: int, height: int, idat: bytes) -> bytes:
    """A 1-bit grayscale PNG declaring width x height, with the given IDAT payload."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def all_zero_png(width: int, height: int) -> bytes:
    """A valid, tiny, all-black 1-bit PNG of any declared size (a decompression bomb)."""
    compressor = zlib.compressobj(9)
    rows = b"\x00" * ((1 + (width + 7) // 8) * 100)
    body = b"".join(compressor.compress(rows) for _ in range(height // 100))
    body += compressor.compress(b"\x00" * ((1 + (width + 7) // 8) * (height % 100)))
    return raw_png(width, height, body + compressor.flush())
