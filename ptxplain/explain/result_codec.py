"""Build and read the compact binary result (``ptxplain.v1.ExplainResult``).

Maps travel as raw little-endian float16/float32, uint8, or an 8-bit PNG — never as JSON lists.
:func:`decode_map` is what clients (gateway, harness, CLI) use to get a numpy array back.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ptxplain.errors import Code, DecodeError, PtxplainError, client_message
from ptxplain.v1 import result_pb2 as pb

__all__ = ["decode_map", "encode_map", "error_status", "ok_status"]

_ENCODING = {
    "float16": pb.MAP_ENCODING_FLOAT16,
    "float32": pb.MAP_ENCODING_FLOAT32,
    "uint8": pb.MAP_ENCODING_UINT8,
    "png": pb.MAP_ENCODING_PNG,
}


def ok_status() -> pb.Status:
    return pb.Status(code=int(Code.OK), message="", http_status=200)


def error_status(exc: PtxplainError) -> pb.Status:
    """The result's status: the error's code, its message bounded and ASCII-escaped."""
    return pb.Status(
        code=int(exc.code), message=client_message(str(exc)), http_status=exc.http_status
    )


def _to_bytes(values: np.ndarray, encoding: str) -> bytes:
    if encoding == "float16":
        return values.astype("<f2").tobytes()
    if encoding == "float32":
        return values.astype("<f4").tobytes()
    quantized = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    if encoding == "uint8":
        return quantized.tobytes()
    buffer = io.BytesIO()
    Image.fromarray(quantized, mode="L").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def encode_map(
    values: np.ndarray,
    *,
    method: str,
    encoding: str,
    normalized: bool,
    resized: bool,
    raw_range: tuple[float, float],
    target_class: int,
) -> pb.Map:
    height, width = values.shape
    return pb.Map(
        method=method,
        height=height,
        width=width,
        encoding=_ENCODING[encoding],
        space=pb.MAP_SPACE_RESIZED if resized else pb.MAP_SPACE_LAYER,
        data=_to_bytes(values, encoding),
        normalized=normalized,
        raw_min=raw_range[0],
        raw_max=raw_range[1],
        target_class=target_class,
    )


def decode_map(message: pb.Map) -> np.ndarray:
    """The map as float32 (H, W); uint8/PNG maps come back scaled to [0, 1]."""
    shape = (message.height, message.width)
    try:
        if message.encoding == pb.MAP_ENCODING_FLOAT16:
            return np.frombuffer(message.data, dtype="<f2").reshape(shape).astype(np.float32)
        if message.encoding == pb.MAP_ENCODING_FLOAT32:
            return np.frombuffer(message.data, dtype="<f4").reshape(shape).astype(np.float32)
        if message.encoding == pb.MAP_ENCODING_UINT8:
            raw = np.frombuffer(message.data, dtype=np.uint8).reshape(shape)
        elif message.encoding == pb.MAP_ENCODING_PNG:
            raw = np.asarray(Image.open(io.BytesIO(message.data)).convert("L")).reshape(shape)
        else:
            raise DecodeError(f"map {message.method!r} has unknown encoding {message.encoding}")
    except ValueError as exc:
        raise DecodeError(
            f"map {message.method!r}: {len(message.data)} bytes do not fit shape {shape}"
        ) from exc
    return raw.astype(np.float32) / 255.0
