"""``ptxplain explain``'s overlays, drawn as the viewer draws them: inferno by default, heat
under the cut-off transparent, a caption and colour bar, an all-zero map said so; the file
names promised by docs/explain.md."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ptxplain.explain.colormaps import lut
from ptxplain.explain.overlay import Look, map_file_name, overlay_rgb, write_outputs
from ptxplain.explain.result_codec import encode_map
from ptxplain.v1 import explainer_pb2 as epb
from ptxplain.v1 import result_pb2 as pb

H, W = 60, 80


def png(gray: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(gray).save(out, format="PNG")
    return out.getvalue()


def heat_map(values: np.ndarray, method: str, raw_max: float = 2.0) -> pb.Map:
    return encode_map(
        values.astype(np.float32),
        method=method,
        encoding="float16",
        normalized=True,
        resized=True,
        raw_range=(0.0, raw_max),
        target_class=1,
    )


def response(maps: list[pb.Map]) -> epb.ExplainResponse:
    geometry = pb.Geometry(
        original_height=H,
        original_width=W,
        input_height=64,
        input_width=64,
        scale=64 / W,
        pad_top=8,
        pad_left=0,
        content_height=48,
        content_width=64,
    )
    result = pb.ExplainResult(
        status=pb.Status(code=0, http_status=200),
        model="resnet18",
        architecture="resnet18",
        classes=["no_pneumothorax", "pneumothorax"],
        probabilities=[0.3, 0.7],
        positive_probability=0.7,
        threshold=0.5,
        positive=True,
        maps=maps,
        geometry=geometry,
        trained=False,
    )
    item = epb.ModelResult(model="resnet18", result=result, architecture="resnet18")
    return epb.ExplainResponse(results=[item], image_format="png", image_bytes=1)


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("gradcam", "m_gradcam.png"),
        ("gradcam++", "m_gradcampp.png"),
        ("hirescam", "m_hirescam.png"),
    ],
)
def test_file_names(method: str, name: str) -> None:
    assert map_file_name("m", method) == name


def test_low_heat_is_transparent_and_high_heat_is_inferno() -> None:
    gray = np.full((4, 4), 0.5)
    heat = np.zeros((4, 4))
    heat[0, 0], heat[0, 1] = 1.0, 0.1
    look = Look(opacity=1.0, cutoff=0.2)
    rgb = overlay_rgb(gray, heat, look)
    assert (rgb[0, 0] == lut("inferno")[255]).all()  # hottest: inferno's pale yellow
    assert (rgb[0, 1] == 128).all() and (rgb[3, 3] == 128).all()  # below the cut-off: the film
    half = overlay_rgb(gray, heat, Look(opacity=0.5))
    assert np.abs(half[0, 0].astype(int) - (128 + lut("inferno")[255].astype(int)) // 2).max() <= 1


def test_look_refuses_unknown_colour_maps_and_bad_levels() -> None:
    with pytest.raises(ValueError, match="unknown colour map"):
        Look(colormap="rainbow")
    with pytest.raises(ValueError, match="opacity"):
        Look(opacity=1.5)


def test_overlays_carry_caption_colour_bar_and_zero_note(tmp_path: Path) -> None:
    gray = np.tile(np.linspace(0, 255, W, dtype=np.uint8), (H, 1))
    hot = np.zeros((64, 64))
    hot[20:40, 20:40] = 1.0
    maps = [heat_map(hot, "gradcam++"), heat_map(np.zeros((64, 64)), "gradcam", raw_max=0.0)]
    summary = write_outputs(png(gray), response(maps), "rid", tmp_path)
    entry = summary["models"]["resnet18"]
    assert entry["overlays"] == ["resnet18_gradcampp.png", "resnet18_gradcam.png"]
    assert json.loads((tmp_path / "summary.json").read_text())["request_id"] == "rid"
    with Image.open(tmp_path / "resnet18_gradcampp.png") as image:
        drawn = np.asarray(image.convert("RGB"))
    with Image.open(tmp_path / "resnet18_gradcam.png") as image:
        zero = np.asarray(image.convert("RGB"))
    assert drawn.shape[1] >= W and drawn.shape[0] > H  # the caption panel under the film
    left = (drawn.shape[1] - W) // 2
    film = drawn[:H, left : left + W]
    coloured = film.max(axis=2).astype(int) - film.min(axis=2) > 24
    assert 0.05 < coloured.mean() < 0.5  # the hot square only; cold heat left transparent
    panel = drawn[H:]
    bar = lut("inferno")[255]
    assert (np.abs(panel.astype(int) - bar).sum(axis=2) < 6).any()  # the colour bar's hot end
    # the all-zero map: no heat on the film, and a red note in the caption the other lacks
    zero_film = zero[:H, left : left + W]
    assert (zero_film.max(axis=2).astype(int) - zero_film.min(axis=2) <= 24).all()
    reddish = (zero[H:, :, 0].astype(int) - zero[H:, :, 1] > 80).sum()
    assert reddish > 20 and (panel[..., 0].astype(int) - panel[..., 1] > 80).sum() < reddish


def test_the_summary_says_what_a_trained_model_was_trained_on(tmp_path: Path) -> None:
    answer = response([heat_map(np.ones((64, 64)), "gradcam")])
    item = answer.results[0]
    item.trained, item.trained_on = True, "phantom (synthetic)"
    item.result.trained, item.result.trained_on = True, "phantom (synthetic)"
    gray = np.zeros((H, W), dtype=np.uint8)
    entry = write_outputs(png(gray), answer, "rid", tmp_path)["models"]["resnet18"]
    assert entry["trained"] and entry["trained_on"] == "phantom (synthetic)"
