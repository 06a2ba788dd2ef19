"""Build small DICOM Part 10 files in memory for tests (no binary fixtures in the repository).

Every dataset carries made-up patient identifiers (:data:`PATIENT_NAME`, :data:`PATIENT_ID`) so
tests can check that nothing identifying leaks out of the decoder.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

__all__ = [
    "PATIENT_ID",
    "PATIENT_NAME",
    "dicom_bytes",
    "encapsulated_dataset",
    "image_dataset",
    "luminance",
    "make_dicom",
    "phantom",
    "voi_lut_item",
]

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "SECRET-PID-0042"


def _base_dataset(transfer_syntax: UID) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.Modality = "DX"
    return ds


def image_dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    **attributes: Any,
) -> Dataset:
    """A native (uncompressed) dataset holding ``pixels``.

    ``pixels`` is (rows, columns), (frames, rows, columns) or (rows, columns, 3), of dtype
    uint8, int8, uint16 or int16. ``attributes`` are set on the dataset afterwards (e.g.
    ``RescaleSlope=2``, ``WindowCenter=100``).
    """
    ds = _base_dataset(ExplicitVRLittleEndian)
    stored = bits_stored if bits_stored is not None else pixels.dtype.itemsize * 8
    ds.set_pixel_data(pixels, photometric, stored, generate_instance_uid=False)
    for name, value in attributes.items():
        setattr(ds, name, value)
    return ds


def encapsulated_dataset(
    fragments: Sequence[bytes],
    *,
    transfer_syntax: UID,
    rows: int,
    columns: int,
    photometric: str = "MONOCHROME2",
    samples: int = 1,
    bits_allocated: int = 8,
    bits_stored: int = 8,
    signed: bool = False,
) -> Dataset:
    """A dataset whose Pixel Data is ``fragments`` (one frame each), already compressed."""
    ds = _base_dataset(transfer_syntax)
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    if len(fragments) > 1:
        ds.NumberOfFrames = len(fragments)
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = encapsulate(list(fragments))
    ds["PixelData"].VR = "OB"
    return ds


def voi_lut_item(lut: np.ndarray, *, first_mapped: int, bits: int) -> Dataset:
    """One item of a VOI LUT Sequence: ``lut[i]`` is the output for input ``first_mapped + i``."""
    item = Dataset()
    item.add_new(0x00283002, "US", [len(lut) % 65536, first_mapped, bits])  # LUT Descriptor
    item.add_new(0x00283006, "US", [int(v) for v in lut])  # LUT Data
    return item


def dicom_bytes(ds: Dataset, *, preamble: bool = True) -> bytes:
    """``ds`` written as a DICOM Part 10 file (128-byte preamble, 'DICM', file meta)."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    data = buffer.getvalue()
    return data if preamble else data[132:]


def make_dicom(pixels: np.ndarray, **kwargs: Any) -> bytes:
    """Shorthand: :func:`image_dataset` written with :func:`dicom_bytes`."""
    return dicom_bytes(image_dataset(pixels, **kwargs))


def phantom(top: int = 4095) -> np.ndarray:
    """A 'chest': a left-to-right ramp over the whole range with a dense (high-value) disc, as
    MONOCHROME2 values (12-bit by default)."""
    yy, xx = np.mgrid[0:40, 0:56]
    image = np.rint(xx * (top - 100) / 55).astype(np.int64)
    image[(yy - 20) ** 2 + (xx - 28) ** 2 < 100] = top - 200
    return image + np.random.default_rng(1234).integers(0, 50, image.shape)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., :3].astype(np.float64) @ [0.299, 0.587, 0.114]) / 255.0
