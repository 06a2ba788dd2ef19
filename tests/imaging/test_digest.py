"""Pixel digests: what they depend on (shape, 16-bit values) and not (dtype, layout, noise below
the 16-bit step), the digest file's round trip and faults, the same digest for the same DICOM or
PNG whichever way it is read (as the harness does or as the handler does), and their cost."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from harness.data.dicom_io import read_image_pixels
from ptxplain.errors import InvalidInputError, WeightsError
from ptxplain.imaging.decode import DecodeLimits, decode_dicom_dataset, decode_image
from ptxplain.imaging.digest import (
    DIGEST_SIZE,
    SeenDigests,
    pixel_digest,
    read_digests,
    write_digests,
)
from tests.factories.dicom_factory import make_dicom, phantom
from tests.factories.image_factory import gradient, pillow_bytes

RNG = np.random.default_rng(7)


def _image(height: int = 40, width: int = 56) -> np.ndarray:
    return RNG.random((height, width), dtype=np.float32)


def test_the_digest_depends_on_values_and_shape_only() -> None:
    image = _image()
    digest = pixel_digest(image)
    assert len(digest) == DIGEST_SIZE and pixel_digest(image.copy()) == digest
    assert pixel_digest(image.astype(np.float64)) == digest
    assert pixel_digest(np.asfortranarray(image)) == digest
    # a decoder's values (k / 65535, k / 255 ...) moved by float noise far below one 16-bit step
    on_grid = (RNG.integers(0, 65536, (40, 56)) / 65535.0).astype(np.float32)
    assert pixel_digest(on_grid + np.float32(1e-6)) == pixel_digest(on_grid)
    changed = image.copy()
    changed[3, 4] = (changed[3, 4] + 0.01) % 1.0
    assert pixel_digest(changed) != digest
    assert pixel_digest(image.reshape(56, 40)) != digest  # same values, other shape
    assert pixel_digest(image.T) != digest


def test_out_of_range_and_nan_values_are_clamped_without_warnings() -> None:
    values = np.array([[np.nan, -1.0, 2.0, np.inf]], dtype=np.float32)
    assert pixel_digest(values) == pixel_digest(np.array([[0.0, 0.0, 1.0, 1.0]]))
    with pytest.raises(InvalidInputError, match=r"\(H, W\)"):
        pixel_digest(np.zeros((2, 2, 3), dtype=np.float32))


def test_the_digest_file_round_trips_both_sections(tmp_path: Path) -> None:
    train = [pixel_digest(_image()) for _ in range(5)]
    val = [pixel_digest(_image()) for _ in range(3)]
    path = write_digests(tmp_path / "d.bin", [*train, train[0]], reversed(val))
    seen = read_digests(path)
    assert seen == SeenDigests(frozenset(train), frozenset(val)) and len(seen) == 8
    assert train[2] in seen and val[1] in seen and pixel_digest(_image()) not in seen
    assert path.stat().st_size == 16 + 8 * DIGEST_SIZE  # a duplicate is kept once
    assert not list(tmp_path.glob(".*partial"))


def test_a_malformed_digest_file_is_a_weights_error(tmp_path: Path) -> None:
    path = write_digests(tmp_path / "d.bin", [pixel_digest(_image())], [])
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(WeightsError, match="announces 1 \\+ 0 digests"):
        read_digests(path)
    path.write_bytes(b"not a digest file")
    with pytest.raises(WeightsError, match="not a ptxplain digest file"):
        read_digests(path)
    with pytest.raises(WeightsError, match="cannot read"):
        read_digests(tmp_path / "absent.bin")


def _both_ways(path: Path) -> tuple[bytes, bytes]:
    """(as training reads the file, as the handler decodes the request body)."""
    served = decode_image(path.read_bytes(), limits=DecodeLimits(max_bytes=1 << 30)).pixels
    return pixel_digest(read_image_pixels(path)), pixel_digest(served)


def test_a_dicom_and_a_png_digest_the_same_read_as_training_or_as_the_handler(
    tmp_path: Path,
) -> None:
    dicom = tmp_path / "a.dcm"
    dicom.write_bytes(make_dicom(phantom().astype(np.uint16), bits_stored=12))
    png = tmp_path / "b.png"
    png.write_bytes(pillow_bytes(Image.fromarray(gradient().astype(np.uint8)), "PNG"))
    png16 = tmp_path / "c.png"
    png16.write_bytes(pillow_bytes(Image.fromarray(phantom(65535).astype(np.uint16)), "PNG"))
    for path in (dicom, png, png16):
        read_by_training, read_by_handler = _both_ways(path)
        assert read_by_training == read_by_handler, path.name
    assert len({_both_ways(dicom)[0], _both_ways(png)[0]}) == 2


def test_the_real_radiograph_digests_the_same_both_ways() -> None:
    path = Path(str(get_testdata_file("RG1_UNCR.dcm")))
    read_by_training, read_by_handler = _both_ways(path)
    assert read_by_training == read_by_handler
    dataset = decode_dicom_dataset(pydicom.dcmread(path), limits=DecodeLimits(max_bytes=1 << 30))
    assert pixel_digest(dataset.pixels) == read_by_handler


@pytest.mark.parametrize("side", [256, 1024])
def test_a_digest_costs_little_next_to_decoding(side: int) -> None:
    image = _image(side, side)
    pixel_digest(image)
    started = time.perf_counter()
    for _ in range(10):
        pixel_digest(image)
    ms = (time.perf_counter() - started) * 100.0
    print(f"pixel_digest {side}x{side}: {ms:.2f} ms")
    assert ms < (5.0 if side == 256 else 60.0)  # measured 0.1 / 1.5 ms (2 busy cores)
