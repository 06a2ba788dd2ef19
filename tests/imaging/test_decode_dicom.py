"""DICOM decoding: bit depths, windowing, VOI LUTs, polarity, compressed transfer syntaxes."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_windowing
from pydicom.uid import (
    MPEG2MPML,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from ptxplain.errors import DecodeError, ImageTooLargeError
from ptxplain.imaging.decode import (
    DecodedImage,
    DecodeLimits,
    decode_dicom_dataset,
    decode_image,
)
from tests.factories import dicom_factory as factory
from tests.factories.dicom_factory import luminance, phantom
from tests.factories.image_factory import gradient, pillow_bytes

LIMITS = DecodeLimits()
RNG = np.random.default_rng(1234)


# --- DICOM ------------------------------------------------------------------------------------


def test_dicom_8bit_without_window_uses_min_max() -> None:
    pixels = gradient().astype(np.uint8) // 2 + 20  # 20..147
    decoded = decode_image(factory.make_dicom(pixels), limits=LIMITS)
    assert decoded.format == "dicom" and decoded.photometric == "MONOCHROME2"
    assert decoded.intensity_mapping == "min_max" and decoded.window is None
    assert (decoded.original_dtype, decoded.bits_stored, decoded.modality) == ("uint8", 8, "DX")
    expected = (pixels - pixels.min()) / (pixels.max() - pixels.min())
    np.testing.assert_allclose(decoded.pixels, expected, atol=1e-6)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_dicom_window_matches_pydicom(function: str) -> None:
    pixels = phantom().astype(np.uint16)
    ds = factory.image_dataset(
        pixels, bits_stored=12, WindowCenter=1500, WindowWidth=2000, VOILUTFunction=function
    )
    decoded = decode_dicom_dataset(ds, limits=LIMITS)
    assert decoded.intensity_mapping == "window" and decoded.window == (1500.0, 2000.0)
    reference = apply_windowing(pixels.astype(np.float64), ds) / 4095.0  # pydicom: 0..4095
    np.testing.assert_allclose(decoded.pixels, reference, atol=1e-5)


def test_dicom_signed_rescale_then_window() -> None:
    stored = (phantom() - 2048).astype(np.int16)  # signed 12-bit stored values
    ds = factory.image_dataset(
        stored,
        bits_stored=12,
        RescaleSlope=2,
        RescaleIntercept=-1024,
        WindowCenter=[-500, 40],  # multi-valued: the first window applies
        WindowWidth=[3000, 400],
    )
    decoded = decode_image(factory.dicom_bytes(ds), limits=LIMITS)
    assert decoded.original_dtype == "int16" and decoded.window == (-500.0, 3000.0)
    values = stored * 2.0 - 1024.0
    expected = np.clip((values - (-500 - 0.5)) / (3000 - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(decoded.pixels, expected, atol=1e-5)


@pytest.mark.parametrize("window", [False, True])
def test_monochrome1_comes_out_with_the_same_polarity(window: bool) -> None:
    mono2 = phantom()
    mono1 = 4095 - mono2  # same anatomy, stored inverted
    extra2: dict[str, Any] = {"WindowCenter": 1800, "WindowWidth": 3000} if window else {}
    extra1: dict[str, Any] = (
        {"WindowCenter": 4095 - 1800 + 1, "WindowWidth": 3000} if window else {}
    )
    as2 = factory.make_dicom(mono2.astype(np.uint16), bits_stored=12, **extra2)
    as1 = factory.make_dicom(
        mono1.astype(np.uint16), photometric="MONOCHROME1", bits_stored=12, **extra1
    )
    decoded2, decoded1 = decode_image(as2, limits=LIMITS), decode_image(as1, limits=LIMITS)
    assert decoded1.photometric == "MONOCHROME1"
    np.testing.assert_allclose(decoded1.pixels, decoded2.pixels, atol=1e-5)
    assert decoded1.pixels[20, 28] > decoded1.pixels[2, 2] + 0.5  # dense disc is bright


@pytest.mark.parametrize("with_window_too", [False, True])
def test_dicom_voi_lut_sequence(with_window_too: bool) -> None:
    pixels = phantom().astype(np.uint16)
    lut = np.rint(255 * (np.arange(4096) / 4095) ** 0.5).astype(np.uint16) + 10  # 10..265
    extra: dict[str, Any] = {"WindowCenter": 100, "WindowWidth": 10} if with_window_too else {}
    ds = factory.image_dataset(pixels, bits_stored=12, **extra)
    ds.VOILUTSequence = [factory.voi_lut_item(lut, first_mapped=0, bits=16)]
    decoded = decode_image(factory.dicom_bytes(ds), limits=LIMITS)
    assert decoded.intensity_mapping == "voi_lut"  # the LUT wins over the window
    np.testing.assert_allclose(decoded.pixels, (lut[pixels] - 10) / 255.0, atol=1e-6)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=["rle", "j2k"])
@pytest.mark.parametrize("signed", [False, True])
def test_dicom_lossless_compression_decodes_like_native(
    syntax: pydicom.uid.UID, signed: bool
) -> None:
    pixels = (phantom() - 2048).astype(np.int16) if signed else phantom().astype(np.uint16)
    native = decode_image(factory.make_dicom(pixels, bits_stored=12), limits=LIMITS)
    ds = factory.image_dataset(pixels, bits_stored=12)
    ds.compress(syntax)
    compressed = decode_image(factory.dicom_bytes(ds), limits=LIMITS)
    assert compressed.transfer_syntax == syntax
    np.testing.assert_array_equal(compressed.pixels, native.pixels)


def test_dicom_jpeg_baseline_gray_and_color() -> None:
    gray = gradient(48, 64).astype(np.uint8)
    jpeg = pillow_bytes(Image.fromarray(gray), "JPEG", quality=95)
    ds = factory.encapsulated_dataset([jpeg], transfer_syntax=JPEGBaseline8Bit, rows=48, columns=64)
    decoded = decode_image(factory.dicom_bytes(ds), limits=LIMITS)
    reference = np.asarray(Image.open(io.BytesIO(jpeg)), dtype=np.float32)
    reference = (reference - reference.min()) / (reference.max() - reference.min())
    np.testing.assert_allclose(decoded.pixels, reference, atol=2 / 255)
    rgb = np.stack([gray, gray // 2, 255 - gray], axis=-1)
    jpeg = pillow_bytes(Image.fromarray(rgb), "JPEG", quality=95)
    ds = factory.encapsulated_dataset(
        [jpeg],
        transfer_syntax=JPEGBaseline8Bit,
        rows=48,
        columns=64,
        samples=3,
        photometric="YBR_FULL_422",
    )
    decoded = decode_image(factory.dicom_bytes(ds), limits=LIMITS)
    np.testing.assert_allclose(decoded.pixels, luminance(rgb), atol=0.03)


def _bundled(name: str) -> str:
    path = get_testdata_file(name)  # shipped inside the pydicom wheel, read locally
    assert isinstance(path, str), f"pydicom 3.0.2 ships {name}"
    return path


def test_dicom_jpeg_ls_decodes_like_native() -> None:
    # No JPEG-LS encoder is installed (pyjpegls); pydicom ships a JPEG-LS file and its native twin.
    jls = pydicom.dcmread(_bundled("MR_small_jpeg_ls_lossless.dcm"))
    native = pydicom.dcmread(_bundled("MR_small.dcm"))
    assert jls.file_meta.TransferSyntaxUID == JPEGLSLossless
    decoded = decode_dicom_dataset(jls, limits=LIMITS)
    np.testing.assert_array_equal(
        decoded.pixels, decode_dicom_dataset(native, limits=LIMITS).pixels
    )


def test_dicom_rgb_native_becomesluminance() -> None:
    rgb = RNG.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    decoded = decode_image(factory.make_dicom(rgb, photometric="RGB"), limits=LIMITS)
    assert decoded.photometric == "RGB" and decoded.intensity_mapping == "bit_depth"
    np.testing.assert_allclose(decoded.pixels, luminance(rgb), atol=1e-5)


def test_dicom_multi_frame_decodes_the_first_frame() -> None:
    frames = np.stack([phantom(), np.zeros((40, 56), np.int64), phantom()[::-1]])
    decoded = decode_image(factory.make_dicom(frames.astype(np.uint16)), limits=LIMITS)
    single = decode_image(factory.make_dicom(frames[0].astype(np.uint16)), limits=LIMITS)
    assert decoded.frames == 3
    np.testing.assert_array_equal(decoded.pixels, single.pixels)
    with pytest.raises(ImageTooLargeError, match=r"40x56x3 frame\(s\) = 6720 pixels"):
        decode_image(
            factory.make_dicom(frames.astype(np.uint16)), limits=DecodeLimits(max_pixels=5000)
        )


def test_dicom_constant_image_maps_to_zeros() -> None:
    decoded = decode_image(factory.make_dicom(np.full((8, 8), 777, np.uint16)), limits=LIMITS)
    assert np.isfinite(decoded.pixels).all() and not decoded.pixels.any()


def test_no_patient_identifiers_in_the_decoded_image() -> None:
    decoded = decode_image(factory.make_dicom(phantom().astype(np.uint16)), limits=LIMITS)
    text = repr({k: v for k, v in dataclasses.asdict(decoded).items() if k != "pixels"})
    assert factory.PATIENT_NAME not in text and factory.PATIENT_ID not in text
    assert not any("patient" in field.name.lower() for field in dataclasses.fields(DecodedImage))


def test_decode_dicom_dataset_reads_a_file_from_disk(tmp_path: pytest.TempPathFactory) -> None:
    data = factory.make_dicom(phantom().astype(np.uint16), bits_stored=12)
    path = tmp_path / "image.dcm"  # type: ignore[operator]
    path.write_bytes(data)
    from_disk = decode_dicom_dataset(pydicom.dcmread(path), limits=LIMITS)
    np.testing.assert_array_equal(from_disk.pixels, decode_image(data, limits=LIMITS).pixels)


def test_undecodable_transfer_syntax_is_named() -> None:
    ds = factory.encapsulated_dataset(
        [b"\x00\x00\x01\xb3" * 8], transfer_syntax=MPEG2MPML, rows=8, columns=8
    )
    with pytest.raises(DecodeError, match=r"MPEG2 Main Profile / Main Level .*no decoder"):
        decode_image(factory.dicom_bytes(ds), limits=LIMITS)
