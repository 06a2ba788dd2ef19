"""Reader of the SIIM-ACR pneumothorax layout: a DICOM tree plus an RLE label CSV.

``root`` holds ``train-rle.csv`` (stage 1, relative RLE, header ``ImageId, EncodedPixels``
with a space) or ``stage_2_train.csv`` (stage 2, absolute RLE), and ``*.dcm`` files at any
depth. ImageId is the DICOM's SOPInstanceUID (or its file stem). ``-1`` means no
pneumothorax; several rows for one ImageId are several regions, merged.

Problems with one image (no DICOM for a row, no row for a DICOM, bad RLE, a malformed row, a
corrupt DICOM, a duplicate id, ``-1`` mixed with RLE rows) skip that whole image and are listed
in the summary with file and line; a missing or headerless CSV is an error. With
``strict=True`` every skip is an error instead. See docs/data.md.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from harness.data.dataset import (
    Dataset,
    EmptyMask,
    ImageRecord,
    Label,
    ReadOptions,
    RleChoice,
    SkipLog,
    SkipReason,
    SpanMask,
    summarize,
)
from harness.data.dicom_io import DicomHeader, read_header
from harness.data.rle import (
    NEGATIVE,
    EncodingDecision,
    RleEncoding,
    RleRow,
    detect_encoding,
    merge_spans,
    parse_pairs,
    spans_from_pairs,
)
from harness.progress import progress
from ptxplain.errors import DecodeError, InvalidInputError

__all__ = [
    "CSV_NAMES",
    "LabelRow",
    "find_label_csv",
    "looks_like_siim",
    "read_label_csv",
    "read_siim",
]

CSV_NAMES = ("train-rle.csv", "stage_2_train.csv")
_ID_COLUMN, _RLE_COLUMN = "ImageId", "EncodedPixels"


@dataclasses.dataclass(frozen=True)
class LabelRow:
    line: int  # 1-based line in the CSV (the header is line 1)
    text: str  # EncodedPixels, stripped
    error: str = ""  # why the row is malformed, if it is


def looks_like_siim(root: Path) -> bool:
    return any((root / name).is_file() for name in CSV_NAMES)


def find_label_csv(root: Path, override: Path | None) -> Path:
    """The label CSV: ``override``, else the one stage-1 or stage-2 file in ``root``."""
    if override is not None:
        if not override.is_file():
            raise InvalidInputError(f"--csv {override}: no such file")
        return override
    found = [root / name for name in CSV_NAMES if (root / name).is_file()]
    if not found:
        raise InvalidInputError(f"{root}: no label CSV (expected {' or '.join(CSV_NAMES)})")
    if len(found) > 1:
        raise InvalidInputError(
            f"{root}: both {CSV_NAMES[0]} and {CSV_NAMES[1]}; choose with --csv"
        )
    return found[0]


def _columns(path: Path, header: list[str]) -> tuple[int, int]:
    names = [h.strip() for h in header]
    if _ID_COLUMN not in names or _RLE_COLUMN not in names:
        raise InvalidInputError(
            f"{path} line 1: header {header!r} lacks {_ID_COLUMN} and {_RLE_COLUMN} columns"
        )
    return names.index(_ID_COLUMN), names.index(_RLE_COLUMN)


def _open_text(path: Path) -> IO[str]:
    """The CSV as text; a ``.gz`` file (as torchxrayvision ships the real one) is unpacked."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return path.open(newline="", encoding="utf-8-sig")


def read_label_csv(path: Path) -> tuple[dict[str, list[LabelRow]], list[LabelRow]]:
    """Rows grouped by ImageId, plus rows with no ImageId at all (malformed)."""
    rows: dict[str, list[LabelRow]] = defaultdict(list)
    orphans: list[LabelRow] = []
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            id_col, rle_col = _columns(path, next(reader, []))
            width = max(id_col, rle_col) + 1
            for fields in reader:
                if not any(f.strip() for f in fields):
                    continue
                image_id = fields[id_col].strip() if len(fields) > id_col else ""
                text = fields[rle_col].strip() if len(fields) > rle_col else ""
                error = (
                    ""
                    if len(fields) >= width and text
                    else f"{len(fields)} fields, no EncodedPixels"
                )
                row = LabelRow(reader.line_num, text, error)
                (rows[image_id] if image_id else orphans).append(row)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"{path}: unreadable label CSV ({exc})") from exc
    return dict(rows), orphans


def scan_dicoms(root: Path, skips: SkipLog, *, show: bool) -> dict[str, tuple[Path, DicomHeader]]:
    """Headers of every ``*.dcm`` under ``root``, by SOPInstanceUID and by file stem."""
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".dcm" and p.is_file())
    found: dict[str, tuple[Path, DicomHeader]] = {}
    for path in progress(paths, total=len(paths), desc="DICOM headers", enabled=show):
        try:
            header = read_header(path)
        except DecodeError as exc:
            skips.add(SkipReason.CORRUPT_IMAGE, path, exc.message)
            continue
        image_id = header.sop_instance_uid or path.stem
        if image_id in found:
            skips.add(
                SkipReason.DUPLICATE_ID, path, f"ImageId {image_id} also in {found[image_id][0]}"
            )
            continue
        found[image_id] = (path, header)
    for path, header in list(found.values()):
        found.setdefault(path.stem, (path, header))
    return found


@dataclasses.dataclass
class _Context:
    csv_path: Path
    skips: SkipLog
    pseudonymize: Callable[[str], str]
    no_patient_id: int = 0

    def where(self, row: LabelRow) -> str:
        return f"line {row.line}"


def _parsed_rows(ctx: _Context, image_id: str, rows: list[LabelRow]) -> list[np.ndarray] | None:
    """The RLE pairs of each row, ``[]`` for a negative, ``None`` if the image is skipped."""
    bad = next((r for r in rows if r.error), None)
    if bad is not None:
        detail = f"{ctx.where(bad)}: ImageId {image_id}: {bad.error}"
        ctx.skips.add(SkipReason.MALFORMED_ROW, ctx.csv_path, detail)
        return None
    negatives = [r for r in rows if r.text == NEGATIVE]
    if negatives and len(negatives) < len(rows):
        lines = ", ".join(str(r.line) for r in rows)
        detail = f"lines {lines}: ImageId {image_id}: -1 and RLE rows together"
        ctx.skips.add(SkipReason.CONFLICTING_ROWS, ctx.csv_path, detail)
        return None
    try:
        return [] if negatives else [parse_pairs(r.text, where=ctx.where(r)) for r in rows]
    except InvalidInputError as exc:
        ctx.skips.add(SkipReason.BAD_RLE, ctx.csv_path, f"ImageId {image_id}: {exc.message}")
        return None


def _decision(choice: RleChoice, csv_path: Path, evidence: list[RleRow]) -> EncodingDecision:
    if choice is not RleChoice.AUTO:
        return EncodingDecision(RleEncoding(choice.value), "forced by --rle")
    fallback = RleEncoding.ABSOLUTE if csv_path.name == CSV_NAMES[1] else RleEncoding.RELATIVE
    return detect_encoding(evidence, fallback=fallback)


def _record(
    ctx: _Context,
    image_id: str,
    dicom: tuple[Path, DicomHeader],
    rows: list[LabelRow],
    pairs: list[np.ndarray],
    encoding: RleEncoding,
) -> ImageRecord | None:
    path, header = dicom
    shape = (header.rows, header.columns)
    if not pairs:
        return _make_record(ctx, image_id, path, header, np.zeros((0, 2), dtype=np.int64))
    try:
        spans = merge_spans(
            spans_from_pairs(p, encoding, shape[0] * shape[1], where=ctx.where(r))
            for p, r in zip(pairs, rows, strict=True)
        )
    except InvalidInputError as exc:
        ctx.skips.add(SkipReason.BAD_RLE, ctx.csv_path, f"ImageId {image_id}: {exc.message}")
        return None
    return _make_record(ctx, image_id, path, header, spans)


def _make_record(
    ctx: _Context, image_id: str, path: Path, header: DicomHeader, spans: np.ndarray
) -> ImageRecord:
    shape = (header.rows, header.columns)
    if not header.patient_id:
        ctx.no_patient_id += 1
    patient = ctx.pseudonymize(header.patient_id or f"image:{image_id}")
    positive = spans.shape[0] > 0
    return ImageRecord(
        image_id=image_id,
        path=path,
        patient=patient,
        label=Label.POSITIVE if positive else Label.NEGATIVE,
        shape=shape,
        mask_pixels=int((spans[:, 1] - spans[:, 0]).sum()),
        mask_source=SpanMask(spans, shape) if positive else EmptyMask(shape),
    )


def read_siim(root: Path, options: ReadOptions, pseudonymize: Callable[[str], str]) -> Dataset:
    """Read a SIIM-ACR folder into a :class:`Dataset` (see the module docstring)."""
    csv_path = find_label_csv(root, options.csv)
    table, orphans = read_label_csv(csv_path)
    skips = SkipLog(strict=options.strict)
    ctx = _Context(csv_path, skips, pseudonymize)
    for row in orphans:
        skips.add(SkipReason.MALFORMED_ROW, csv_path, f"{ctx.where(row)}: row has no ImageId")
    dicoms = scan_dicoms(root, skips, show=options.progress)
    parsed = {i: p for i, rows in table.items() if (p := _parsed_rows(ctx, i, rows)) is not None}
    evidence = [
        RleRow(pairs, _pixels(dicoms.get(i))) for i, rows in parsed.items() for pairs in rows
    ]
    decision = _decision(options.rle, csv_path, evidence)
    records, used = [], set()
    for image_id, pairs in parsed.items():
        dicom = dicoms.get(image_id)
        if dicom is None:
            detail = f"{ctx.where(table[image_id][0])}: no DICOM for ImageId {image_id}"
            skips.add(SkipReason.NO_IMAGE, csv_path, detail)
            continue
        used.add(dicom[0])
        record = _record(ctx, image_id, dicom, table[image_id], pairs, decision.encoding)
        if record is not None:
            records.append(record)
    _skip_unlabelled(ctx, dicoms, set(table), used)
    notes = [f"labels: {csv_path.name}"]
    if ctx.no_patient_id:
        notes.append(f"{ctx.no_patient_id} images have no PatientID; each is its own patient")
    return summarize(
        "siim",
        root,
        records,
        skips,
        rle_encoding=decision.encoding.value,
        rle_reason=decision.reason,
        notes=tuple(notes),
    )


def _pixels(dicom: tuple[Path, DicomHeader] | None) -> int | None:
    return None if dicom is None else dicom[1].rows * dicom[1].columns


def _skip_unlabelled(
    ctx: _Context, dicoms: dict[str, tuple[Path, DicomHeader]], labelled: set[str], used: set[Path]
) -> None:
    """Every readable DICOM that no CSV row names (e.g. the competition's test images)."""
    seen: set[Path] = set()
    for path, header in dicoms.values():
        if path in used or path in seen:
            continue
        seen.add(path)
        if header.sop_instance_uid not in labelled and path.stem not in labelled:
            ctx.skips.add(SkipReason.NO_LABEL_ROW, path, f"no row in {ctx.csv_path.name}")
