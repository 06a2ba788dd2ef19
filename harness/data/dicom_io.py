"""DICOM files for the harness: reading headers and pixels, writing (made-up) radiographs.

Pixels are decoded by the serving decoder (:func:`ptxplain.imaging.decode.decode_dicom_dataset` and
:func:`ptxplain.imaging.decode.decode_image`), so the study sees exactly what the model servers see:
float32 (rows, cols) in [0, 1], bright = dense, MONOCHROME1 inverted, modality and VOI LUT
applied. Headers are read with ``stop_before_pixels=True``.

Writing is deterministic: the same pixels and :class:`DicomIdentity` give byte-identical files
(no timestamps, UIDs derived from the caller's seed via :func:`derived_uid`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_encoder
from pydicom.uid import (
    UID,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from ptxplain.errors import DecodeError, InvalidInputError

__all__ = [
    "HEADER_TAGS",
    "DicomHeader",
    "DicomIdentity",
    "build_radiograph",
    "can_encode",
    "derived_uid",
    "read_header",
    "read_image_pixels",
    "write_dicom",
]

HEADER_TAGS = ("SOPInstanceUID", "PatientID", "Rows", "Columns")
# What a truncated or garbled file makes pydicom raise while parsing a header.
_HEADER_ERRORS = (InvalidDicomError, OSError, EOFError, ValueError, KeyError, struct.error)
_MAX_FILE_BYTES = 1 << 30


@dataclasses.dataclass(frozen=True)
class DicomHeader:
    """The few header fields the harness needs. ``patient_id`` is raw: pseudonymize it."""

    sop_instance_uid: str
    patient_id: str
    rows: int
    columns: int


def read_header(path: Path) -> DicomHeader:
    """Read :data:`HEADER_TAGS` without pixels; :class:`DecodeError` if the file is unusable."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
        rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        uid, patient = str(ds.get("SOPInstanceUID", "")), str(ds.get("PatientID", ""))
    except _HEADER_ERRORS as exc:
        raise DecodeError(
            f"{path}: not a readable DICOM file ({type(exc).__name__}: {exc})"
        ) from exc
    if rows <= 0 or columns <= 0:
        raise DecodeError(f"{path}: DICOM has no image size (Rows={rows}, Columns={columns})")
    return DicomHeader(uid.strip(), patient.strip(), rows, columns)


def read_image_pixels(path: Path) -> np.ndarray:
    """Any image file the harness reads (DICOM, PNG, JPEG) as float32 in [0, 1]."""
    from ptxplain.imaging.decode import DecodeLimits, decode_dicom_dataset, decode_image

    limits = DecodeLimits(max_bytes=_MAX_FILE_BYTES)
    if path.suffix.lower() != ".dcm":
        return decode_image(path.read_bytes(), limits=limits).pixels
    try:
        ds = pydicom.dcmread(path)
    except _HEADER_ERRORS as exc:
        raise DecodeError(f"{path}: not a readable DICOM file ({exc})") from exc
    try:
        return decode_dicom_dataset(ds, limits=limits).pixels
    except DecodeError as exc:
        raise DecodeError(f"{path}: {exc.message}") from exc


@dataclasses.dataclass(frozen=True)
class DicomIdentity:
    """Made-up patient and study attributes of one synthetic radiograph."""

    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    study_uid: str
    series_uid: str
    sop_uid: str
    study_date: str


def derived_uid(*parts: object) -> str:
    """A stable UID in the ``2.25`` (UUID-derived) arc from a hash of ``parts``."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big") >> 1)


def _identity_attributes(ds: Dataset, who: DicomIdentity) -> None:
    ds.PatientID = who.patient_id
    ds.PatientName = who.patient_name
    ds.PatientBirthDate = who.birth_date
    ds.PatientSex = who.sex
    ds.StudyInstanceUID = who.study_uid
    ds.SeriesInstanceUID = who.series_uid
    ds.SOPInstanceUID = who.sop_uid
    ds.StudyDate = who.study_date
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1


def build_radiograph(
    pixels: np.ndarray, who: DicomIdentity, *, bits_stored: int, monochrome1: bool
) -> Dataset:
    """A DX "for presentation" dataset holding ``pixels`` (uint16, display values).

    With ``monochrome1`` the stored values are inverted (bright = low). A full-range linear
    window is written so decoders map stored values by bit depth, not by the data's min..max.
    """
    if pixels.dtype != np.uint16 or pixels.ndim != 2:
        raise InvalidInputError(f"radiograph pixels must be 2-D uint16, got {pixels.dtype}")
    top = (1 << bits_stored) - 1
    stored = (top - pixels) if monochrome1 else pixels
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    _identity_attributes(ds, who)
    photometric = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.set_pixel_data(
        stored.astype(np.uint16), photometric, bits_stored, generate_instance_uid=False
    )
    ds.WindowCenter = (top + 1) / 2
    ds.WindowWidth = top + 1
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def can_encode(transfer_syntax: UID) -> bool:
    """Whether pydicom can compress to ``transfer_syntax`` on this machine."""
    return bool(get_encoder(transfer_syntax).is_available)


def write_dicom(path: Path, ds: Dataset, transfer_syntax: UID = ExplicitVRLittleEndian) -> None:
    """Write ``ds`` as a Part 10 file, compressing first for RLE / JPEG 2000 Lossless."""
    if transfer_syntax in (RLELossless, JPEG2000Lossless):
        ds.compress(transfer_syntax, generate_instance_uid=False)
    elif transfer_syntax != ExplicitVRLittleEndian:
        raise InvalidInputError(f"unsupported transfer syntax for writing: {transfer_syntax}")
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
