"""decode_image: PNG, JPEG and DICOM inputs, all generated here, plus every bad-input path."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from PIL import Image
from pydicom.encaps import generate_frames
from pydicom.uid import (
    JPEG2000Lossless,
)

from ptxplain.errors import ConfigError, DecodeError, ImageTooLargeError, PtxplainError
from ptxplain.imaging.decode import (
    DecodeLimits,
    decode_image,
    sniff_format,
)
from tests.factories import dicom_factory as factory
from tests.factories.dicom_factory import luminance, phantom
from tests.factories.image_factory import all_zero_png, gradient, pillow_bytes, raw_png

LIMITS = DecodeLimits()
RNG = np.random.default_rng(1234)


# --- PNG / JPEG -------------------------------------------------------------------------------


def test_png_8bit_gray_is_scaled_by_255() -> None:
    gray = gradient().astype(np.uint8)
    decoded = decode_image(pillow_bytes(Image.fromarray(gray), "PNG"), limits=LIMITS)
    assert decoded.format == "png" and decoded.source_mode == "L"
    assert (decoded.bits_stored, decoded.original_dtype) == (8, "uint8")
    assert decoded.intensity_mapping == "bit_depth"
    assert decoded.pixels.dtype == np.float32 and decoded.pixels.shape == gray.shape
    np.testing.assert_allclose(decoded.pixels, gray / 255.0, atol=1e-6)
    assert decoded.pixels.min() == 0.0 and decoded.pixels.max() == 1.0


def test_png_16bit_gray_is_scaled_by_65535() -> None:
    gray = gradient(top=65535).astype(np.uint16)
    decoded = decode_image(pillow_bytes(Image.fromarray(gray), "PNG"), limits=LIMITS)
    assert decoded.source_mode.startswith("I") and decoded.bits_stored == 16
    np.testing.assert_allclose(decoded.pixels, gray / 65535.0, atol=1e-6)
    assert decoded.pixels.min() == 0.0 and decoded.pixels.max() == 1.0
    assert 0 < decoded.pixels[0, 1] < 1 / 255  # 16-bit precision is kept


def test_png_rgb_becomesluminance() -> None:
    rgb = RNG.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    decoded = decode_image(pillow_bytes(Image.fromarray(rgb), "PNG"), limits=LIMITS)
    assert decoded.source_mode == "RGB" and decoded.pixels.shape == (24, 40)
    np.testing.assert_allclose(decoded.pixels, luminance(rgb), atol=1 / 255 + 1e-6)


def test_png_rgba_ignores_alpha() -> None:
    rgba = RNG.integers(0, 256, (24, 40, 4), dtype=np.uint8)
    decoded = decode_image(pillow_bytes(Image.fromarray(rgba, "RGBA"), "PNG"), limits=LIMITS)
    assert decoded.source_mode == "RGBA"
    np.testing.assert_allclose(decoded.pixels, luminance(rgba), atol=1 / 255 + 1e-6)


def test_png_palette_becomes_luminance_of_its_colors() -> None:
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]
    index = RNG.integers(0, 4, (20, 30), dtype=np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(palette)
    decoded = decode_image(pillow_bytes(image, "PNG"), limits=LIMITS)
    assert decoded.source_mode == "P"
    colors = np.array(palette, dtype=np.uint8).reshape(4, 3)
    np.testing.assert_allclose(decoded.pixels, luminance(colors[index]), atol=1 / 255 + 1e-6)


def test_jpeg_gray_and_rgb() -> None:
    gray = gradient().astype(np.uint8)
    decoded = decode_image(pillow_bytes(Image.fromarray(gray), "JPEG", quality=95), limits=LIMITS)
    assert decoded.format == "jpeg" and decoded.source_mode == "L"
    assert np.abs(decoded.pixels - gray / 255.0).mean() < 0.01
    rgb = np.stack([gray, gray // 2, 255 - gray], axis=-1)
    decoded = decode_image(pillow_bytes(Image.fromarray(rgb), "JPEG", quality=95), limits=LIMITS)
    assert decoded.source_mode == "RGB"
    assert np.abs(decoded.pixels - luminance(rgb)).mean() < 0.01


def test_jpeg_exif_orientation_is_applied() -> None:
    stored = np.zeros((20, 40), dtype=np.uint8)
    stored[:5, :5] = 255  # marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    data = pillow_bytes(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())
    decoded = decode_image(data, limits=LIMITS)
    assert decoded.pixels.shape == (40, 20)
    assert decoded.pixels[:5, -5:].mean() > 0.8  # the marker is now top-right
    assert decoded.pixels[:5, :5].mean() < 0.2


# --- format sniffing and bad inputs -------------------------------------------------------------


def test_sniff_format() -> None:
    gray = Image.fromarray(np.zeros((4, 4), np.uint8))
    assert sniff_format(pillow_bytes(gray, "PNG")) == "png"
    assert sniff_format(pillow_bytes(gray, "JPEG")) == "jpeg"
    assert sniff_format(factory.make_dicom(np.zeros((4, 4), np.uint8))) == "dicom"
    no_preamble = factory.dicom_bytes(
        factory.image_dataset(np.zeros((4, 4), np.uint8)), preamble=False
    )
    with pytest.raises(DecodeError, match="128-byte preamble"):
        sniff_format(no_preamble)


def test_empty_body() -> None:
    with pytest.raises(DecodeError, match="empty body"):
        decode_image(b"", limits=LIMITS)


def test_random_bytes_name_their_first_bytes() -> None:
    with pytest.raises(
        DecodeError, match=r"not a PNG, JPEG or DICOM image \(first bytes: 47 49 46 38"
    ):
        decode_image(b"GIF89a" + bytes(RNG.integers(0, 256, 300, dtype=np.uint8)), limits=LIMITS)


def test_truncated_png_and_jpeg() -> None:
    noisy = Image.fromarray(RNG.integers(0, 256, (64, 64), dtype=np.uint8))
    for fmt in ("PNG", "JPEG"):
        data = pillow_bytes(noisy, fmt)
        with pytest.raises(DecodeError, match=f"truncated {fmt} image"):
            decode_image(data[: len(data) // 2], limits=LIMITS)


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (0.5, "pixel data is truncated"),
        (0.999, "pixel data is truncated"),
        (200, r"no Pixel Data .*: none, or the file is truncated"),
    ],
)
def test_truncated_dicom(cut: float, message: str) -> None:
    data = factory.make_dicom(phantom().astype(np.uint16))
    end = int(len(data) * cut) if cut < 1 else int(cut)
    with pytest.raises(DecodeError, match=message):
        decode_image(data[:end], limits=LIMITS)


def test_truncated_compressed_dicom() -> None:
    ds = factory.image_dataset(RNG.integers(0, 4096, (40, 56)).astype(np.uint16), bits_stored=12)
    ds.compress(JPEG2000Lossless)
    data = factory.dicom_bytes(ds)
    cut_sequence = data[: len(data) - 2000]
    with (
        pytest.warns(UserWarning, match="End of file reached before delimiter"),
        pytest.raises(DecodeError, match=r"no Pixel Data .*: none, or the file is truncated"),
    ):
        decode_image(cut_sequence, limits=LIMITS)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    cut = factory.encapsulated_dataset(
        [frame[: len(frame) // 2]],
        transfer_syntax=JPEG2000Lossless,
        rows=40,
        columns=56,
        bits_allocated=16,
        bits_stored=12,
    )
    with pytest.raises(DecodeError, match=r"corrupt or truncated DICOM pixel data \(JPEG 2000"):
        decode_image(factory.dicom_bytes(cut), limits=LIMITS)


def test_dicom_without_pixel_data() -> None:
    ds = factory.image_dataset(np.zeros((4, 4), np.uint8))
    del ds.PixelData
    with pytest.raises(DecodeError, match=r"no Pixel Data \(7FE0,0010\)"):
        decode_image(factory.dicom_bytes(ds), limits=LIMITS)


def test_zero_sized_images() -> None:
    ds = factory.image_dataset(np.zeros((4, 4), np.uint8))
    ds.Rows = 0
    ds.PixelData = b""
    with pytest.raises(DecodeError, match=r"zero-sized DICOM image \(Rows=0, Columns=4\)"):
        decode_image(factory.dicom_bytes(ds), limits=LIMITS)
    with pytest.raises(DecodeError, match=r"zero-sized PNG image \(0x5\)"):
        decode_image(raw_png(0, 5, zlib.compress(b"")), limits=LIMITS)


def test_pixel_cap_is_checked_before_decoding() -> None:
    # Declares 8000x6000 but holds only a scrap of IDAT: loading it would be a DecodeError.
    declared = raw_png(8000, 6000, zlib.compress(b"\x00" * 5000)[:40])
    with pytest.raises(ImageTooLargeError, match="8000x6000 = 48000000 pixels, over the 40000000"):
        decode_image(declared, limits=LIMITS)
    ds = factory.image_dataset(np.zeros((4, 4), np.uint16))
    ds.Rows, ds.Columns = 60000, 60000
    with pytest.raises(ImageTooLargeError, match="3600000000 pixels"):
        decode_image(factory.dicom_bytes(ds), limits=LIMITS)
    small = pillow_bytes(Image.fromarray(np.zeros((20, 20), np.uint8)), "JPEG")
    with pytest.raises(ImageTooLargeError, match="400 pixels, over the 100-pixel cap"):
        decode_image(small, limits=DecodeLimits(max_pixels=100))


@pytest.mark.parametrize("side", [10_000, 20_000], ids=["bomb-warning", "bomb-error"])
def test_decompression_bomb(side: int) -> None:
    bomb = all_zero_png(side, side)
    assert len(bomb) < 100_000  # tiny on the wire, side*side pixels once decoded
    with pytest.raises(ImageTooLargeError, match="decompression-bomb guard"):
        decode_image(bomb, limits=LIMITS)


def test_byte_cap() -> None:
    data = pillow_bytes(Image.fromarray(RNG.integers(0, 256, (64, 64), dtype=np.uint8)), "PNG")
    assert len(data) > 1000
    with pytest.raises(
        ImageTooLargeError, match=f"body is {len(data)} bytes, over the 100-byte cap"
    ):
        decode_image(data, limits=DecodeLimits(max_bytes=100))


@pytest.mark.parametrize(
    "kwargs",
    [{"max_bytes": 0}, {"max_pixels": -1}, {"max_bytes": True}, {"max_pixels": 10**9}],
)
def test_limits_are_validated(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match=r"DecodeLimits\.max_"):
        DecodeLimits(**kwargs)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the values it reads
def test_corrupted_bytes_only_raise_project_errors() -> None:
    gray = RNG.integers(0, 256, (24, 24), dtype=np.uint8)
    samples = [
        pillow_bytes(Image.fromarray(gray), "PNG"),
        pillow_bytes(Image.fromarray(gray), "JPEG"),
        factory.make_dicom(gray),
    ]
    rng = np.random.default_rng(7)
    for sample in samples:
        for _ in range(40):
            corrupt = bytearray(sample)
            for position in rng.integers(8, len(corrupt), 6):
                corrupt[position] = int(rng.integers(0, 256))
            try:
                decoded = decode_image(bytes(corrupt), limits=LIMITS)
            except PtxplainError as exc:
                assert isinstance(exc, DecodeError | ImageTooLargeError), exc
            else:
                assert np.isfinite(decoded.pixels).all()
                assert decoded.pixels.min() >= 0.0 and decoded.pixels.max() <= 1.0
