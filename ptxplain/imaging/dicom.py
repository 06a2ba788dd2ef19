"""DICOM Part 10 data sets to one grayscale float32 array in [0, 1], bright = dense.

pydicom's pixel decoders cover native, RLE Lossless (pydicom), JPEG / JPEG-LS
(pylibjpeg-libjpeg) and JPEG 2000 (pylibjpeg-openjpeg). The modality LUT, then the VOI LUT or
window, are applied; MONOCHROME1 is inverted. See docs/decoding.md.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder, pixel_array
from pydicom.uid import UID, JPEGBaseline8Bit

from ptxplain.errors import DecodeError, PtxplainError
from ptxplain.imaging.types import (
    LUMA,
    DecodedImage,
    DecodeLimits,
    IntensityMapping,
    check_pixel_count,
)

__all__ = ["decode_dicom_bytes", "decode_dicom_dataset"]

_MONOCHROME = frozenset({"MONOCHROME1", "MONOCHROME2"})
# Photometric interpretations pydicom hands back as RGB samples.
_RGB_LIKE = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
# Pillow (libjpeg-turbo) decodes baseline JPEG about 4x faster than pylibjpeg-libjpeg.
_PREFERRED_PLUGIN = {JPEGBaseline8Bit: "pillow"}


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


def decode_dicom_bytes(data: bytes, limits: DecodeLimits) -> DecodedImage:
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:
        raise DecodeError(f"corrupt or truncated DICOM file: {exc}") from exc
    return decode_dicom_dataset(ds, limits=limits)


def decode_dicom_dataset(ds: Dataset, *, limits: DecodeLimits) -> DecodedImage:
    """Decode the first frame of a DICOM dataset (e.g. one read from disk) within ``limits``."""
    try:
        return _decode_dataset(ds, limits)
    except PtxplainError:
        raise
    except Exception as exc:  # pydicom converts raw elements lazily: a bad value fails on access
        raise DecodeError(f"corrupt DICOM data set: {exc}") from exc


def _decode_dataset(ds: Dataset, limits: DecodeLimits) -> DecodedImage:
    layout = _read_layout(ds)
    check_pixel_count(
        layout.rows * layout.columns * layout.frames,
        f"{layout.rows}x{layout.columns}x{layout.frames} frame(s)",
        limits,
    )
    _require_decoder(layout.transfer_syntax)
    if not layout.transfer_syntax.is_compressed:
        _require_native_length(ds, layout)
    plugin = _PREFERRED_PLUGIN.get(layout.transfer_syntax, "")
    if plugin not in get_decoder(layout.transfer_syntax).available_plugins:
        plugin = ""  # "" lets pydicom try every installed plugin
    try:
        raw = pixel_array(ds, index=0, decoding_plugin=plugin)
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
        floats = "FloatPixelData" in ds or "DoubleFloatPixelData" in ds
        reason = "float pixel data is not supported" if floats else "none, or the file is truncated"
        raise DecodeError(f"DICOM has no Pixel Data (7FE0,0010): {reason}")
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
    luma = rgb.astype(np.float32) @ LUMA
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
    """The first (center, width) pair; Window Center / Width may hold several."""
    values = [ds.get("WindowCenter"), ds.get("WindowWidth")]
    if any(value is None or value == "" for value in values):
        return None
    firsts = [value[0] if isinstance(value, Sequence) else value for value in values]
    return float(firsts[0]), float(firsts[1])


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
