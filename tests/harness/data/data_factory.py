"""Build small SIIM-style data folders for tests (no binary fixtures in the repository).

Every DICOM carries made-up identifiers (:data:`PATIENT_NAME`, ``PatientID`` given by the
test) so tests can check that nothing identifying leaks into records, reports or files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import UID, ExplicitVRLittleEndian

from harness.data.dataset import Dataset, ReadOptions
from harness.data.dicom_io import DicomIdentity, build_radiograph, derived_uid, write_dicom
from harness.data.layouts import open_dataset

__all__ = ["PATIENT_NAME", "read_dataset", "skips_by_reason", "write_csv", "write_dicom_file"]

PATIENT_NAME = "Doe^Jane"


def write_dicom_file(
    path: Path,
    *,
    sop_uid: str,
    patient_id: str = "SECRET-PID-1",
    shape: tuple[int, int] = (4, 5),
    syntax: UID = ExplicitVRLittleEndian,
) -> Path:
    """A small DX file whose pixels ramp 0..4095 (so it has content)."""
    pixels = np.linspace(0, 4095, shape[0] * shape[1]).reshape(shape).astype(np.uint16)
    who = DicomIdentity(
        patient_id=patient_id,
        patient_name=PATIENT_NAME,
        birth_date="19700101",
        sex="F",
        study_uid=derived_uid(sop_uid, "study"),
        series_uid=derived_uid(sop_uid, "series"),
        sop_uid=sop_uid,
        study_date="20200101",
    )
    write_dicom(path, build_radiograph(pixels, who, bits_stored=12, monochrome1=False), syntax)
    return path


def write_csv(path: Path, lines: list[str], header: str = "ImageId, EncodedPixels") -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding="ascii")
    return path


def read_dataset(root: Path, tmp_path: Path, **options: Any) -> Dataset:
    """``open_dataset`` with its pseudonym key and split file kept under ``tmp_path/state``."""
    return open_dataset(root, ReadOptions(state_dir=tmp_path / "state", **options))


def skips_by_reason(dataset: Dataset) -> dict[str, list[str]]:
    """The summary's skipped files, ``"path: detail"`` per reason."""
    found: dict[str, list[str]] = {}
    for item in dataset.summary.skipped:
        found.setdefault(item.reason.value, []).append(f"{item.path}: {item.detail}")
    return found
