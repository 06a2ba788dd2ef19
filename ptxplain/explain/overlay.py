"""Client side of ``ptxplain explain``: lay each model's map on the ORIGINAL image and write an
overlay PNG per model and method, plus a JSON summary.

Not imported by the gateway itself (it needs numpy, OpenCV, Pillow and torch, through
``ptxplain.imaging.decode`` and ``ptxplain.imaging.preprocess.map_to_original``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ptxplain.errors import Code
from ptxplain.explain.colormaps import DEFAULT_COLORMAP, lut
from ptxplain.explain.result_codec import decode_map
from ptxplain.imaging.decode import DecodeLimits, decode_image
from ptxplain.imaging.preprocess import geometry_from_proto, map_to_original
from ptxplain.v1 import explainer_pb2 as epb
from ptxplain.v1 import result_pb2 as pb

__all__ = [
    "ZERO_MAP_RANGE",
    "Look",
    "is_zero_map",
    "map_file_name",
    "overlay_image",
    "overlay_rgb",
    "write_outputs",
]

_PANEL_MIN_WIDTH = 560  # the caption stays readable under a small image
# A CAM whose raw range is below this is drawn as nothing and said to be all zero (grad-cam
# divides by max - min + 1e-7, so such a map "normalizes" to values near 0). The viewer agrees.
ZERO_MAP_RANGE = 1e-6


@dataclasses.dataclass(frozen=True)
class Look:
    """How heat is drawn (the viewer's defaults): a colour map at ``opacity`` over the gray
    film, heat below ``cutoff`` (of the map's 0..1 scale) fully transparent."""

    colormap: str = DEFAULT_COLORMAP
    opacity: float = 0.6
    cutoff: float = 0.2

    def __post_init__(self) -> None:
        lut(self.colormap)  # raises for an unknown name
        if not (0.0 <= self.opacity <= 1.0 and 0.0 <= self.cutoff < 1.0):
            raise ValueError("opacity must be in [0, 1] and cutoff in [0, 1)")


def map_file_name(model: str, method: str) -> str:
    """``<model>_<method>.png``; a ``+`` in the method is written ``p`` (gradcam++ -> gradcampp)."""
    return f"{model}_{method.replace('+', 'p')}.png"


def overlay_rgb(gray: np.ndarray, heat: np.ndarray, look: Look = Look()) -> np.ndarray:
    """(H, W) gray in [0, 1] and a same-size map in [0, 1] -> (H, W, 3) uint8: the colour map
    blended over the gray at ``look.opacity`` where the heat reaches ``look.cutoff``."""
    base = np.repeat(np.clip(gray, 0, 1)[..., None] * 255.0, 3, axis=2)
    level = np.clip(heat, 0, 1)
    colored = lut(look.colormap)[np.asarray(np.round(level * 255), dtype=np.intp)].astype(float)
    shown = ((level >= look.cutoff) & (level > 0))[..., None]
    blended = np.where(shown, base + (colored - base) * look.opacity, base)
    return np.asarray(np.clip(np.round(blended), 0, 255), dtype=np.uint8)


def is_zero_map(item: pb.Map) -> bool:
    return item.raw_max - item.raw_min < ZERO_MAP_RANGE


def _display_heat(item: pb.Map, on_image: np.ndarray) -> np.ndarray:
    """The map on the 0..1 display scale: as sent when normalized, else over its raw maximum."""
    if is_zero_map(item):
        return np.zeros_like(on_image)
    if item.normalized:
        return on_image
    return on_image / item.raw_max if item.raw_max > 0 else np.zeros_like(on_image)


def _grid(heat: pb.Map) -> str:
    if heat.space == pb.MAP_SPACE_LAYER:
        return f"grid {heat.height}x{heat.width}"
    return f"map {heat.height}x{heat.width} (upsampled)"


def _caption(item: epb.ModelResult, heat: pb.Map, look: Look) -> list[str]:
    result = item.result
    verdict = "POSITIVE" if result.positive else "negative"
    on = item.trained_on or result.trained_on or "?"
    trained = f"  trained on: {on}" if item.trained else "  [untrained: random weights]"
    if result.seen_in_training:
        trained += "  [SEEN IN TRAINING: not a held-out answer]"
    lines = [
        f"{item.model} ({item.architecture}): {verdict}  "
        f"p = {result.positive_probability:.3f}, threshold {result.threshold:.2f}{trained}",
        f"{heat.method} on class {heat.target_class}, {_grid(heat)}, "
        + ("normalized per image" if heat.normalized else "raw / its max")
        + f"; {look.colormap}, below {look.cutoff:.2f} transparent",
    ]
    if is_zero_map(heat):
        lines.append(f"ALL-ZERO MAP (raw max {heat.raw_max:.2g}): the model points nowhere")
    return lines


def _colorbar(width: int, height: int, look: Look) -> Image.Image:
    levels = np.linspace(0.0, 1.0, width)
    row = lut(look.colormap)[np.asarray(np.round(levels * 255), dtype=np.intp)]
    row[levels < look.cutoff] = 85  # the transparent part, greyed out
    return Image.fromarray(np.repeat(row[None], height, axis=0))


def _panel(width: int, lines: list[str], look: Look) -> Image.Image:
    size = max(13, width // 48)
    font = ImageFont.load_default(size)
    bar_width = min(256, width // 3)
    panel = Image.new("RGB", (width, (len(lines) + 2) * (size + 6) + 8), (20, 22, 26))
    draw = ImageDraw.Draw(panel)
    for k, line in enumerate(lines):
        colour = (255, 120, 120) if line.startswith("ALL-ZERO") else (235, 235, 235)
        draw.text((8, 6 + k * (size + 6)), line, fill=colour, font=font)
    top = 6 + len(lines) * (size + 6) + 4
    panel.paste(_colorbar(bar_width, size, look), (8, top))
    draw.text((bar_width + 16, top), "0 .. 1 heat", fill=(200, 200, 200), font=font)
    return panel


def overlay_image(gray: np.ndarray, heat: np.ndarray, lines: list[str], look: Look) -> Image.Image:
    """The film with its heat at the original size, a caption and colour bar below."""
    picture = Image.fromarray(overlay_rgb(gray, heat, look))
    panel = _panel(max(picture.width, _PANEL_MIN_WIDTH), lines, look)
    out = Image.new("RGB", (panel.width, picture.height + panel.height), (20, 22, 26))
    out.paste(picture, ((panel.width - picture.width) // 2, 0))
    out.paste(panel, (0, picture.height))
    return out


def _overlays(item: epb.ModelResult, gray: np.ndarray, out: Path, look: Look) -> list[str]:
    result = item.result
    if not result.maps or not result.HasField("geometry"):
        return []
    geometry = geometry_from_proto(result.geometry)
    written = []
    for heat in result.maps:
        on_image = _display_heat(heat, map_to_original(decode_map(heat), geometry))
        name = map_file_name(item.model, heat.method)
        overlay_image(gray, on_image, _caption(item, heat, look), look).save(out / name)
        written.append(name)
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
        "trained_on": item.trained_on or item.result.trained_on,
        "seen_in_training": item.result.seen_in_training,
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
    image: bytes, response: epb.ExplainResponse, request_id: str, out: Path, look: Look = Look()
) -> dict[str, Any]:
    """Write ``<model>_<method>.png`` per map and ``summary.json`` into ``out``; return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    gray = decode_image(image, limits=DecodeLimits(max_bytes=max(len(image), 1))).pixels
    models = {}
    for item in response.results:
        overlays = _overlays(item, gray, out, look) if item.status.code == 0 else []
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
