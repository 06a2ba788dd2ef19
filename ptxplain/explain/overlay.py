"""Client side of ``ptxplain explain``: lay each model's map on the ORIGINAL image and write an
overlay PNG per model and method, plus a JSON summary.

Not imported by the gateway itself (it needs numpy, OpenCV, Pillow and torch, through
``ptxplain.imaging.decode`` and ``ptxplain.imaging.preprocess.map_to_original``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from ptxplain.errors import Code
from ptxplain.explain.result_codec import decode_map
from ptxplain.imaging.decode import DecodeLimits, decode_image
from ptxplain.imaging.preprocess import geometry_from_proto, map_to_original
from ptxplain.v1 import explainer_pb2 as epb
from ptxplain.v1 import result_pb2 as pb

__all__ = ["overlay_rgb", "write_outputs"]

_ALPHA = 0.45  # weight of the heat map in the blend


def overlay_rgb(gray: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """(H, W) gray in [0, 1] and a same-size map -> (H, W, 3) uint8: gray under a JET heat map.

    The map is min-max scaled for display (a raw, unnormalized map has arbitrary units)."""
    low, high = float(heat.min()), float(heat.max())
    scaled = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    levels = np.asarray(np.clip(scaled, 0, 1) * 255, dtype=np.uint8)
    colored = cv2.applyColorMap(levels, cv2.COLORMAP_JET)
    colored = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB).astype(np.float32)
    base = np.repeat((np.clip(gray, 0, 1) * 255.0)[..., None], 3, axis=2)
    return np.asarray(np.clip((1 - _ALPHA) * base + _ALPHA * colored, 0, 255), dtype=np.uint8)


def _overlays(result: pb.ExplainResult, gray: np.ndarray, model: str, out: Path) -> list[str]:
    if not result.maps or not result.HasField("geometry"):
        return []
    geometry = geometry_from_proto(result.geometry)
    written = []
    for item in result.maps:
        on_image = map_to_original(decode_map(item), geometry)
        path = out / f"{model}_{item.method.replace('+', 'pp')}.png"
        Image.fromarray(overlay_rgb(gray, on_image)).save(path)
        written.append(path.name)
    return written


def _code_name(value: int) -> str:
    try:
        return Code(value).name
    except ValueError:
        return str(value)


def _summary(item: epb.ModelResult, overlays: list[str]) -> dict[str, Any]:
    result, status = item.result, item.status
    entry: dict[str, Any] = {
        "status": _code_name(status.code),
        "message": status.message,
        "architecture": item.architecture,
        "trained": item.trained,
        "gateway_ms": {
            "queue": item.gateway_timings.queue_ms,
            "backend": item.gateway_timings.backend_ms,
            "gateway": item.gateway_timings.gateway_ms,
        },
    }
    if item.HasField("result") and status.code == 0:
        entry.update(
            positive=result.positive,
            positive_probability=result.positive_probability,
            threshold=result.threshold,
            probabilities=list(result.probabilities),
            classes=list(result.classes),
            handler_ms={
                "decode": result.timings.decode_ms,
                "preprocess": result.timings.preprocess_ms,
                "forward_cam": result.timings.forward_cam_ms,
                "encode": result.timings.encode_ms,
            },
            overlays=overlays,
        )
    return entry


def write_outputs(
    image: bytes, response: epb.ExplainResponse, request_id: str, out: Path
) -> dict[str, Any]:
    """Write ``<model>_<method>.png`` per map and ``summary.json`` into ``out``; return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    gray = decode_image(image, limits=DecodeLimits(max_bytes=max(len(image), 1))).pixels
    models = {}
    for item in response.results:
        overlays = _overlays(item.result, gray, item.model, out) if item.status.code == 0 else []
        models[item.model] = _summary(item, overlays)
    summary = {
        "request_id": request_id,
        "image_format": response.image_format,
        "image_bytes": response.image_bytes,
        "total_ms": response.total_ms,
        "models": models,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
