"""PNG-converted and plain-folder layouts: readers, and a writer for the PNG layout.

**PNG layout** (the common Kaggle conversion)::

    root/images/<name>.png     the radiographs (8- or 16-bit grayscale)
    root/masks/<name>.png      same name, same size; non-zero = pneumothorax
    root/<labels>.csv          one CSV: image name (image | filename | new_filename | ImageId),
                               label (label | has_pneumo | pneumothorax: 1/0/true/false/yes/no),
                               optional patient (patient | patient_id | PatientID)

**Plain folder layout**::

    root/positive/*.{png,jpg,jpeg,dcm}    root/negative/*.{png,jpg,jpeg,dcm}
    root/masks/<stem>.png                 optional, for any image

A negative without a mask file has an empty mask; a positive without one has no mask
(``mask_pixels`` is ``None``; it still counts for classification). A mask that contradicts its
label, has another size, or cannot be read skips the image, listed in the summary. Without a
patient column (PNG) or a DICOM PatientID (folders) every image is its own patient.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.dataset import (
    Dataset,
    EmptyMask,
    ImageRecord,
    Label,
    NoMask,
    ReadOptions,
    SkipLog,
    SkipReason,
    summarize,
)
from harness.data.dicom_io import read_header
from harness.progress import progress
from ptxplain.errors import DecodeError, InvalidInputError

__all__ = [
    "IMAGE_SUFFIXES",
    "PngMask",
    "looks_like_folder_layout",
    "looks_like_png_layout",
    "read_folder_layout",
    "read_png_layout",
    "write_png_layout",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")
_NAME_COLUMNS = ("image", "filename", "new_filename", "imageid", "image_id")
_LABEL_COLUMNS = ("label", "has_pneumo", "pneumothorax")
_PATIENT_COLUMNS = ("patient", "patient_id", "patientid")
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")
_IMAGE_ERRORS = (OSError, ValueError, Image.DecompressionBombError, DecodeError)
Pseudonymize = Callable[[str], str]


def looks_like_png_layout(root: Path) -> bool:
    return (root / "images").is_dir() and (root / "masks").is_dir()


def looks_like_folder_layout(root: Path) -> bool:
    return (root / "positive").is_dir() and (root / "negative").is_dir()


class PngMask:
    """A mask stored as an image file (non-zero = lesion), loaded on demand."""

    def __init__(self, path: Path, shape: tuple[int, int]) -> None:
        self.path, self.shape = path, shape

    def __call__(self) -> np.ndarray:
        with Image.open(self.path) as image:
            return np.asarray(image.convert("L")) > 0

    def __repr__(self) -> str:
        return f"PngMask({self.path})"


def _image_shape(path: Path) -> tuple[int, int]:
    if path.suffix.lower() == ".dcm":
        header = read_header(path)
        return header.rows, header.columns
    with Image.open(path) as image:
        width, height = image.size
    return height, width


def _patient_of(path: Path, given: str | None) -> str:
    if given:
        return given
    if path.suffix.lower() == ".dcm":
        return read_header(path).patient_id
    return ""


def _build(
    image_id: str,
    path: Path,
    label: Label,
    mask_path: Path | None,
    patient: str | None,
    skips: SkipLog,
    pseudonymize: Pseudonymize,
) -> ImageRecord | None:
    """One record, or ``None`` after logging why the image is skipped."""
    try:
        shape = _image_shape(path)
        raw_patient = _patient_of(path, patient)
    except _IMAGE_ERRORS as exc:
        skips.add(SkipReason.CORRUPT_IMAGE, path, f"unreadable image ({exc})")
        return None
    source, pixels = _mask_for(path, label, mask_path, shape, skips)
    if source is None:
        return None
    return ImageRecord(
        image_id,
        path,
        pseudonymize(raw_patient or f"image:{image_id}"),
        label,
        shape,
        pixels,
        source,
    )


def _mask_for(
    path: Path, label: Label, mask_path: Path | None, shape: tuple[int, int], skips: SkipLog
) -> tuple[PngMask | EmptyMask | NoMask | None, int | None]:
    if mask_path is None:
        return (EmptyMask(shape), 0) if label is Label.NEGATIVE else (NoMask(), None)
    source = PngMask(mask_path, shape)
    try:
        mask = source()
    except _IMAGE_ERRORS as exc:
        skips.add(SkipReason.CORRUPT_IMAGE, mask_path, f"unreadable mask ({exc})")
        return None, None
    pixels = int(mask.sum())
    problem = _mask_problem(mask.shape, shape, label, pixels)
    if problem:
        skips.add(SkipReason.MASK_MISMATCH, mask_path, f"{problem} (image {path.name})")
        return None, None
    return source, pixels


def _mask_problem(
    mask_shape: tuple[int, ...], shape: tuple[int, int], label: Label, pixels: int
) -> str:
    if mask_shape != shape:
        return f"mask is {mask_shape[0]}x{mask_shape[1]}, image is {shape[0]}x{shape[1]}"
    if label is Label.POSITIVE and pixels == 0:
        return "label 1 but the mask is empty"
    if label is Label.NEGATIVE and pixels:
        return f"label 0 but the mask has {pixels} pixels"
    return ""


# --- PNG layout --------------------------------------------------------------------------------


def _labels_csv(root: Path, override: Path | None) -> Path:
    if override is not None:
        if not override.is_file():
            raise InvalidInputError(f"--csv {override}: no such file")
        return override
    found = sorted(root.glob("*.csv"))
    if len(found) != 1:
        what = "no labels CSV" if not found else f"{len(found)} CSV files"
        raise InvalidInputError(f"{root}: {what} (expected exactly one; choose with --csv)")
    return found[0]


def _column(path: Path, header: list[str], names: tuple[str, ...], required: bool) -> int | None:
    lowered = [h.strip().lower() for h in header]
    index = next((lowered.index(n) for n in names if n in lowered), None)
    if index is None and required:
        raise InvalidInputError(f"{path} line 1: no column named any of {', '.join(names)}")
    return index


def _parse_label(text: str) -> Label | None:
    value = text.strip().lower()
    return Label.POSITIVE if value in _TRUE else Label.NEGATIVE if value in _FALSE else None


def _label_rows(path: Path) -> Iterable[tuple[int, str, str, str | None]]:
    """(line, image name, label text, patient or None) per data row."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            cols = [
                _column(path, header, n, r)
                for n, r in (
                    (_NAME_COLUMNS, True),
                    (_LABEL_COLUMNS, True),
                    (_PATIENT_COLUMNS, False),
                )
            ]
            for fields in reader:
                if any(f.strip() for f in fields):
                    name, label, patient = (_field(fields, c) for c in cols)
                    yield reader.line_num, name or "", label or "", patient
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"{path}: unreadable labels CSV ({exc})") from exc


def _field(fields: list[str], column: int | None) -> str | None:
    return fields[column].strip() if column is not None and column < len(fields) else None


def _with_suffix(folder: Path, name: str) -> Path:
    path = folder / name
    return path if path.suffix else path.with_suffix(".png")


def read_png_layout(root: Path, options: ReadOptions, pseudonymize: Pseudonymize) -> Dataset:
    """Read ``images/`` + ``masks/`` + a labels CSV (see the module docstring)."""
    csv_path = _labels_csv(root, options.csv)
    skips, records, named = SkipLog(strict=options.strict), [], set()
    rows = list(_label_rows(csv_path))
    for line, name, label_text, patient in progress(
        rows, total=len(rows), desc="images", enabled=options.progress
    ):
        label, image = _parse_label(label_text), _with_suffix(root / "images", name)
        if image.name in named:
            skips.add(SkipReason.DUPLICATE_ID, csv_path, f"line {line}: {image.name} listed again")
            continue
        named.add(image.name)
        if not name or label is None:
            skips.add(
                SkipReason.MALFORMED_ROW,
                csv_path,
                f"line {line}: name {name!r}, label {label_text!r}",
            )
        elif not image.is_file():
            skips.add(SkipReason.NO_IMAGE, csv_path, f"line {line}: no file images/{image.name}")
        else:
            mask = root / "masks" / image.name
            record = _build(
                image.stem,
                image,
                label,
                mask if mask.is_file() else None,
                patient,
                skips,
                pseudonymize,
            )
            records.append(record)
    for path in sorted((root / "images").iterdir()):
        if path.name not in named:
            skips.add(SkipReason.NO_LABEL_ROW, path, f"no row in {csv_path.name}")
    return summarize(
        "png", root, [r for r in records if r], skips, notes=_patient_note(rows, lambda row: row[3])
    )


def _patient_note(items: list, patient_of: Callable) -> tuple[str, ...]:
    missing = sum(1 for item in items if not patient_of(item))
    return (f"{missing} images have no patient id; each is its own patient",) if missing else ()


# --- plain folders -----------------------------------------------------------------------------


def read_folder_layout(root: Path, options: ReadOptions, pseudonymize: Pseudonymize) -> Dataset:
    """Read ``positive/`` + ``negative/`` (+ optional ``masks/``)."""
    skips, records, seen = SkipLog(strict=options.strict), [], dict[str, Path]()
    files = [
        (label, p)
        for label, folder in ((Label.NEGATIVE, "negative"), (Label.POSITIVE, "positive"))
        for p in sorted((root / folder).iterdir())
        if p.is_file()
    ]
    for label, path in progress(files, total=len(files), desc="images", enabled=options.progress):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skips.add(SkipReason.UNSUPPORTED_FILE, path, f"not one of {', '.join(IMAGE_SUFFIXES)}")
        elif path.stem in seen:
            skips.add(
                SkipReason.DUPLICATE_ID, path, f"image id {path.stem} also in {seen[path.stem]}"
            )
        else:
            seen[path.stem] = path
            mask = root / "masks" / f"{path.stem}.png"
            records.append(
                _build(
                    path.stem,
                    path,
                    label,
                    mask if mask.is_file() else None,
                    None,
                    skips,
                    pseudonymize,
                )
            )
    usable = [r for r in records if r]
    return summarize("folders", root, usable, skips)


# --- writer ------------------------------------------------------------------------------------


def _to_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, optimize=False)


def write_png_layout(dataset: Dataset, out: Path, *, show: bool = False) -> Path:
    """Convert any dataset to the PNG layout (8-bit images, 0/255 masks, ``labels.csv``).

    Patients are written as the dataset's pseudonyms. Positives without a mask are not written
    (the PNG layout needs one); returns the labels CSV path.
    """
    if out.exists() and any(out.iterdir()):
        raise InvalidInputError(f"--out {out}: exists and is not empty")
    lines = ["image,label,patient"]
    for record in progress(
        dataset.records, total=len(dataset.records), desc="to PNG", enabled=show
    ):
        mask = record.load_mask()
        if mask is None:
            continue
        name = f"{record.image_id}.png"
        pixels = np.rint(record.load_pixels() * 255.0).astype(np.uint8)
        _to_png(pixels, out / "images" / name)
        _to_png(mask.astype(np.uint8) * 255, out / "masks" / name)
        lines.append(f"{name},{int(record.label)},{record.patient}")
    (out / "labels.csv").write_text("\n".join(lines) + "\n", encoding="ascii")
    return out / "labels.csv"
