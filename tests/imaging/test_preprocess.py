"""Letterbox geometry, model input and laying maps back onto the original image."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ptxplain.errors import InvalidInputError
from ptxplain.imaging.preprocess import (
    Geometry,
    geometry_from_proto,
    geometry_to_proto,
    letterbox,
    map_to_original,
    to_model_input,
)
from ptxplain.v1 import result_pb2 as pb


def _ones(height: int, width: int) -> np.ndarray:
    return np.ones((height, width), dtype=np.float32)


@pytest.mark.parametrize(
    ("shape", "size", "content", "pad"),
    [
        ((100, 50), 64, (64, 32), (0, 16)),  # tall
        ((50, 100), 64, (32, 64), (16, 0)),  # wide
        ((80, 80), 64, (64, 64), (0, 0)),  # square, downscaled
        ((16, 16), 64, (64, 64), (0, 0)),  # square, upscaled
        ((1, 200), 64, (1, 64), (31, 0)),  # tiny 1xN
        ((300, 1), 64, (64, 1), (0, 31)),  # tiny Nx1
        ((33, 64), 64, (33, 64), (15, 0)),  # odd padding, no resize
    ],
)
def test_letterbox_content_lies_where_geometry_says(
    shape: tuple[int, int], size: int, content: tuple[int, int], pad: tuple[int, int]
) -> None:
    canvas, g = letterbox(_ones(*shape), size)
    assert canvas.shape == (size, size) and canvas.dtype == torch.float32
    assert (g.original_height, g.original_width) == shape
    assert (g.input_height, g.input_width) == (size, size)
    assert (g.content_height, g.content_width) == content
    assert (g.pad_top, g.pad_left) == pad
    assert g.scale == pytest.approx(size / max(shape))
    box = canvas[
        g.pad_top : g.pad_top + g.content_height, g.pad_left : g.pad_left + g.content_width
    ]
    assert torch.allclose(box, torch.ones_like(box), atol=1e-6)
    mask = torch.ones_like(canvas, dtype=torch.bool)
    mask[g.pad_top : g.pad_top + g.content_height, g.pad_left : g.pad_left + g.content_width] = (
        False
    )
    assert int(mask.sum()) == size * size - content[0] * content[1]
    assert torch.count_nonzero(canvas[mask]) == 0, "padding must be exactly 0"


def test_letterbox_keeps_values_in_unit_range_and_does_not_crop() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((90, 40), dtype=np.float32)
    image[0, :] = 1.0  # a bright first row must survive: nothing is cropped
    canvas, g = letterbox(image, 64)
    assert float(canvas.min()) >= 0.0 and float(canvas.max()) <= 1.0
    top_row = canvas[g.pad_top, g.pad_left : g.pad_left + g.content_width]
    assert float(top_row.mean()) > 0.6


def test_letterbox_rejects_bad_input() -> None:
    with pytest.raises(InvalidInputError, match=r"non-empty \(H, W\)"):
        letterbox(np.zeros((0, 5), dtype=np.float32), 64)
    with pytest.raises(InvalidInputError, match="size must be >= 1"):
        letterbox(_ones(4, 4), 0)


def test_to_model_input_replicates_gray_and_normalizes() -> None:
    canvas = torch.linspace(0, 1, 16).view(4, 4)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = to_model_input(canvas, mean, std)
    assert x.shape == (3, 4, 4) and x.dtype == torch.float32
    for c in range(3):
        assert torch.allclose(x[c] * std[c] + mean[c], canvas, atol=1e-6)
    with pytest.raises(InvalidInputError, match="3 values"):
        to_model_input(canvas, (0.5, 0.5), (0.5, 0.5))


def _blob(height: int, width: int, center: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    d2 = (yy - center[0]) ** 2 + (xx - center[1]) ** 2
    return np.exp(-d2 / (2 * radius**2)).astype(np.float32)


@pytest.mark.parametrize(
    ("shape", "center"), [((120, 60), (30, 40)), ((50, 150), (35, 20)), ((40, 40), (10, 25))]
)
def test_round_trip_lands_on_the_blob(shape: tuple[int, int], center: tuple[int, int]) -> None:
    blob = _blob(*shape, center, radius=4.0)
    canvas, g = letterbox(blob, 64)
    back = map_to_original(canvas.numpy(), g)
    assert back.shape == shape and back.dtype == np.float32
    peak = np.unravel_index(int(np.argmax(back)), back.shape)
    assert abs(peak[0] - center[0]) <= 1 and abs(peak[1] - center[1]) <= 1
    assert np.corrcoef(back.ravel(), blob.ravel())[0, 1] > 0.95


def test_coarse_layer_map_maps_onto_the_right_region() -> None:
    # A 7x7 map hot in the canvas cell that holds the original's top-left quarter.
    _, g = letterbox(_ones(100, 50), 70)  # content 70x35 at pad_left 17
    layer = np.zeros((7, 7), dtype=np.float32)
    layer[1, 2] = 1.0  # canvas rows 10..20, cols 20..30 -> original rows ~14..28, cols ~4..18
    back = map_to_original(layer, g)
    assert back.shape == (100, 50)
    peak = np.unravel_index(int(np.argmax(back)), back.shape)
    assert 14 <= peak[0] <= 29 and 3 <= peak[1] <= 19
    assert float(back[70:, :].max()) < 1e-6  # far from the hot cell stays cold


@pytest.mark.filterwarnings("error")
def test_read_only_arrays_are_accepted_without_warnings() -> None:
    image = np.frombuffer(np.ones(12 * 8, dtype=np.float32).tobytes(), dtype=np.float32)
    canvas, g = letterbox(image.reshape(12, 8), 16)
    wire_map = np.frombuffer(canvas.numpy().tobytes(), dtype=np.float32).reshape(16, 16)
    assert not wire_map.flags.writeable
    np.testing.assert_allclose(map_to_original(wire_map, g), np.ones((12, 8)), atol=1e-6)


def test_map_on_the_padding_does_not_reach_the_image() -> None:
    _, g = letterbox(_ones(64, 32), 64)  # pad_left 16
    padding_only = np.zeros((64, 64), dtype=np.float32)
    padding_only[:, :16] = 1.0
    padding_only[:, 48:] = 1.0
    assert float(map_to_original(padding_only, g).max()) < 1e-6


def test_geometry_proto_round_trip() -> None:
    _, g = letterbox(_ones(123, 77), 224)
    message = geometry_to_proto(g)
    assert isinstance(message, pb.Geometry)
    parsed = pb.Geometry.FromString(message.SerializeToString())
    back = geometry_from_proto(parsed)
    assert back.scale == pytest.approx(g.scale, rel=1e-6)
    assert dataclasses.replace(back, scale=g.scale) == g


def test_geometry_fields_mirror_the_proto_message() -> None:
    proto_fields = [f.name for f in pb.Geometry.DESCRIPTOR.fields]
    assert [f.name for f in dataclasses.fields(Geometry)] == proto_fields


def test_inconsistent_geometry_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="outside the input canvas"):
        geometry_from_proto(
            pb.Geometry(
                original_height=10,
                original_width=10,
                input_height=8,
                input_width=8,
                scale=0.8,
                pad_top=4,
                pad_left=0,
                content_height=8,
                content_width=8,
            )
        )
    with pytest.raises(InvalidInputError, match="empty image"):
        geometry_from_proto(pb.Geometry())
