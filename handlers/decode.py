"""Image bytes to one grayscale float32 array in [0, 1], bright = dense; PNG, JPEG and DICOM.

The format is sniffed from magic bytes, never from a file name or content type. PNG and JPEG
go through Pillow with its decompression-bomb guard left on; DICOM (Part 10 files only: a
128-byte preamble then ``DICM``) goes through pydicom, whose pixel decoders cover native, RLE
Lossless (pydicom), JPEG / JPEG-LS (pylibjpeg-libjpeg) and JPEG 2000 (pylibjpeg-openjpeg).
Sizes are checked against :class:`DecodeLimits` before any pixel is decoded. Every failure is a
:class:`~ptxplain.errors.DecodeError` or :class:`~ptxplain.errors.ImageTooLargeError` that names
the problem. See docs/decoding.md for the rules.
"""

from __future__ import annotations

import dataclasses
import io
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pydicom
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder, pixel_array
from pydicom.uid import UID

from ptxplain.errors import ConfigError, DecodeError, ImageTooLargeError, PtxplainError

__all__ = [
    "DecodeLimits",
    "DecodedImage",
    "ImageFormat",
    "IntensityMapping",
    "decode_dicom_dataset",
    "decode_image",
    "sniff_format",
]

ImageFormat = Literal["png", "jpeg", "dicom"]
# How source values were mapped to [0, 1].
IntensityMapping = Literal["bit_depth", "window", "voi_lut", "min_max"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8\xff"
_DICOM_MAGIC = b"DICM"
_DICOM_MAGIC_OFFSET = 128
_PILLOW_FORMAT = {"png": "PNG", "jpeg": "JPEG"}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_MONOCHROME = frozenset({"MONOCHROME1", "MONOCHROME2"})
# Photometric interpretations pydicom hands back as RGB samples.
_RGB_LIKE = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as Pillow's "L"


@dataclasses.dataclass(frozen=True)
class DecodeLimits:
    """Caps on one request's image; checked before any pixel is decoded."""

    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 40_000_000

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"DecodeLimits.{name} must be a positive integer, got {value!r}")
        guard = Image.MAX_IMAGE_PIXELS
        if guard is not None and self.max_pixels > guard:
            raise ConfigError(
                f"DecodeLimits.max_pixels={self.max_pixels} exceeds Pillow's decompression-bomb "
                f"guard ({guard} pixels), which stays on"
            )


@dataclasses.dataclass(frozen=True)
class DecodedImage:
    """A decoded image and a description of its source. Never carries patient identifiers."""

    pixels: np.ndarray  # (H, W) float32 in [0, 1], bright = dense
    format: ImageFormat
    source_mode: str  # Pillow mode ("L", "I;16", "RGB", ...) or DICOM photometric interpretation
    original_dtype: str  # numpy dtype of the stored samples: "uint8", "uint16", "int16", ...
    bits_stored: int  # significant bits per sample in the source
    intensity_mapping: IntensityMapping
    window: tuple[float, float] | None = None  # DICOM (center, width) applied, if any
    photometric: str = ""  # DICOM Photometric Interpretation; "" for PNG / JPEG
    transfer_syntax: str = ""  # DICOM Transfer Syntax UID; "" for PNG / JPEG
    modality: str = ""  # DICOM Modality (e.g. "CR", "DX"); "" for PNG / JPEG
    frames: int = 1  # frames in the source; only the first is decoded

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def sniff_format(data: bytes) -> ImageFormat:
    """The image format from its magic bytes; :class:`DecodeError` for anything else."""
    if not data:
        raise DecodeError("empty body")
    if data.startswith(_PNG_SIGNATURE):
        return "png"
    if data.startswith(_JPEG_SOI):
        return "jpeg"
    if data[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == _DICOM_MAGIC:
        return "dicom"
    raise DecodeError(
        f"not a PNG, JPEG or DICOM image (first bytes: {bytes(data[:16]).hex(' ')}); "
        "a DICOM file needs its 128-byte preamble and 'DICM'"
    )


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
        return _decode_dicom_bytes(data, limits)
    return _decode_with_pillow(data, image_format, limits)


def _check_pixel_count(pixels: int, description: str, limits: DecodeLimits) -> None:
    if pixels > limits.max_pixels:
        raise ImageTooLargeError(
            f"image is {description} = {pixels} pixels, over the {limits.max_pixels}-pixel "
            "cap (max_pixels)"
        )


# --- PNG / JPEG -------------------------------------------------------------------------------


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
                _check_pixel_count(width * height, f"{width}x{height}", limits)
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
        values = np.asarray(image).astype(np.float32)
        pixels = np.clip(values / 65535.0, 0.0, 1.0)
        bits, dtype = 16, "uint16"
    else:
        gray = image if mode == "L" else image.convert("L")
        pixels = np.asarray(gray).astype(np.float32) / 255.0
        bits, dtype = (1, "bool") if mode == "1" else (8, "uint8")
    return DecodedImage(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        format=image_format,
        source_mode=mode,
        original_dtype=dtype,
        bits_stored=bits,
        intensity_mapping="bit_depth",
    )


# --- DICOM ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _DicomLayout:
    rows: int
    columns: int
    frames: int
    samples: int
    bits_allocated: int
    bits_stored: int
    photometric: str
    transfer_syntax: UID


def _decode_dicom_bytes(data: bytes, limits: DecodeLimits) -> DecodedImage:
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:
        raise DecodeError(f"corrupt or truncated DICOM file: {exc}") from exc
    return decode_dicom_dataset(ds, limits=limits)


def decode_dicom_dataset(ds: Dataset, *, limits: DecodeLimits) -> DecodedImage:
    """Decode the first frame of a DICOM dataset (e.g. one read from disk) within ``limits``."""
    layout = _read_layout(ds)
    _check_pixel_count(
        layout.rows * layout.columns * layout.frames,
        f"{layout.rows}x{layout.columns}x{layout.frames} frame(s)",
        limits,
    )
    _require_decoder(layout.transfer_syntax)
    if not layout.transfer_syntax.is_compressed:
        _require_native_length(ds, layout)
    try:
        raw = pixel_array(ds, index=0)
    except Exception as exc:
        raise DecodeError(
            f"corrupt or truncated DICOM pixel data ({layout.transfer_syntax.name}): {exc}"
        ) from exc
    try:
        pixels, mapping, window = _dicom_to_unit(raw, ds, layout)
    except PtxplainError:
        raise
    except Exception as exc:
        raise DecodeError(f"cannot apply the DICOM LUTs / windowing: {exc}") from exc
    return DecodedImage(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        format="dicom",
        source_mode=layout.photometric,
        original_dtype=str(raw.dtype),
        bits_stored=layout.bits_stored,
        intensity_mapping=mapping,
        window=window,
        photometric=layout.photometric,
        transfer_syntax=str(layout.transfer_syntax),
        modality=str(ds.get("Modality", "") or ""),
        frames=layout.frames,
    )


def _required_int(ds: Dataset, keyword: str, tag: str) -> int:
    value = ds.get(keyword)
    if value is None or value == "":
        raise DecodeError(f"DICOM has no {keyword} {tag}")
    return int(value)


def _read_layout(ds: Dataset) -> _DicomLayout:
    if "PixelData" not in ds:
        extra = " (float pixel data is not supported)" if "FloatPixelData" in ds else ""
        raise DecodeError(f"DICOM has no Pixel Data (7FE0,0010){extra}")
    syntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
    if not syntax:
        raise DecodeError("DICOM has no Transfer Syntax UID (0002,0010) in its file meta")
    rows = _required_int(ds, "Rows", "(0028,0010)")
    columns = _required_int(ds, "Columns", "(0028,0011)")
    if rows <= 0 or columns <= 0:
        raise DecodeError(f"zero-sized DICOM image (Rows={rows}, Columns={columns})")
    layout = _DicomLayout(
        rows=rows,
        columns=columns,
        frames=max(1, int(ds.get("NumberOfFrames") or 1)),
        samples=_required_int(ds, "SamplesPerPixel", "(0028,0002)"),
        bits_allocated=_required_int(ds, "BitsAllocated", "(0028,0100)"),
        bits_stored=_required_int(ds, "BitsStored", "(0028,0101)"),
        photometric=str(ds.get("PhotometricInterpretation", "")).strip(),
        transfer_syntax=UID(syntax),
    )
    _check_sample_format(layout)
    return layout


def _check_sample_format(layout: _DicomLayout) -> None:
    if layout.bits_allocated not in (8, 16):
        raise DecodeError(f"DICOM Bits Allocated {layout.bits_allocated} is not supported (8, 16)")
    if not 1 <= layout.bits_stored <= layout.bits_allocated:
        raise DecodeError(
            f"DICOM Bits Stored {layout.bits_stored} does not fit Bits Allocated "
            f"{layout.bits_allocated}"
        )
    supported = (layout.samples == 1 and layout.photometric in _MONOCHROME | {"PALETTE COLOR"}) or (
        layout.samples == 3 and layout.photometric in _RGB_LIKE
    )
    if not supported:
        raise DecodeError(
            f"DICOM Photometric Interpretation {layout.photometric!r} with "
            f"{layout.samples} sample(s) per pixel is not supported"
        )


def _require_decoder(syntax: UID) -> None:
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise DecodeError(
            f"DICOM transfer syntax {syntax.name} ({syntax}) is not supported: no decoder"
        ) from exc
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise DecodeError(
            f"DICOM transfer syntax {syntax.name} ({syntax}) needs a decoder that is not "
            f"installed ({missing})"
        )


def _require_native_length(ds: Dataset, layout: _DicomLayout) -> None:
    frame_bytes = layout.rows * layout.columns * layout.samples * layout.bits_allocated // 8
    have = len(ds.PixelData)
    if have < frame_bytes:
        raise DecodeError(
            f"DICOM pixel data is truncated: {have} bytes, one {layout.rows}x{layout.columns} "
            f"frame needs {frame_bytes}"
        )


def _dicom_to_unit(
    raw: np.ndarray, ds: Dataset, layout: _DicomLayout
) -> tuple[np.ndarray, IntensityMapping, tuple[float, float] | None]:
    if layout.photometric == "PALETTE COLOR":
        rgb = apply_color_lut(raw, ds)
        return _rgb_to_unit(rgb, int(np.iinfo(rgb.dtype).max)), "bit_depth", None
    if layout.samples == 3:
        return _rgb_to_unit(raw, 2**layout.bits_stored - 1), "bit_depth", None
    values = apply_modality_lut(raw, ds)
    unit, mapping, window = _voi_to_unit(values, ds)
    if layout.photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return unit, mapping, window


def _rgb_to_unit(rgb: np.ndarray, max_value: int) -> np.ndarray:
    luma = rgb.astype(np.float32) @ _LUMA
    return np.clip(luma / float(max_value), 0.0, 1.0)


def _voi_to_unit(
    values: np.ndarray, ds: Dataset
) -> tuple[np.ndarray, IntensityMapping, tuple[float, float] | None]:
    """VOI LUT Sequence first, then Window Center/Width, else the data's own min..max."""
    if _has_voi_lut(ds):
        return _voi_lut_to_unit(values, ds), "voi_lut", None
    window = _first_window(ds)
    if window is not None:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        return _window_to_unit(values, *window, function), "window", window
    return _min_max_to_unit(values), "min_max", None


def _has_voi_lut(ds: Dataset) -> bool:
    sequence = ds.get("VOILUTSequence")
    if not sequence:
        return False
    item = sequence[0]
    return item.get("LUTDescriptor") is not None and item.get("LUTData") is not None


def _voi_lut_to_unit(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Apply the first VOI LUT; its own output range (min..max of the LUT data) maps to 0..1."""
    entries, first_mapped, _bits = (int(v) for v in ds.VOILUTSequence[0].LUTDescriptor)
    entries = entries or 65536
    inputs = np.arange(first_mapped, first_mapped + entries, dtype=np.int64)
    table = apply_voi(inputs, ds).astype(np.float32)
    low, high = float(table.min()), float(table.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    indices = np.clip(np.rint(values), first_mapped, first_mapped + entries - 1).astype(np.int64)
    return ((table - low) / (high - low))[indices - first_mapped]


def _first_window(ds: Dataset) -> tuple[float, float] | None:
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None or center == "" or width == "":
        return None
    return float(_first_value(center)), float(_first_value(width))


def _first_value(value: Any) -> Any:
    is_multi = isinstance(value, Sequence) and not isinstance(value, str | bytes)
    return value[0] if is_multi else value


def _window_to_unit(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 windowing, output range 0..1."""
    x = values.astype(np.float32)
    if function == "LINEAR":
        if width < 1:
            raise DecodeError(f"DICOM Window Width {width} must be >= 1 for LINEAR windowing")
        if width == 1:
            return (x > center - 0.5).astype(np.float32)
        return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    if width <= 0:
        raise DecodeError(f"DICOM Window Width {width} must be > 0 for {function} windowing")
    if function == "LINEAR_EXACT":
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))).astype(np.float32)
    raise DecodeError(f"DICOM VOI LUT Function {function!r} is not supported")


def _min_max_to_unit(values: np.ndarray) -> np.ndarray:
    x = values.astype(np.float32)
    low, high = float(x.min()), float(x.max())
    if high <= low:
        return np.zeros(x.shape, dtype=np.float32)
    return (x - low) / (high - low)
