"""The real SIIM-ACR pneumothorax annotations, read with this project's CSV reader and RLE codec.

The ``torchxrayvision`` wheel (a declared dependency, Apache-2.0) ships the stage-1 training
labels of the SIIM-ACR challenge as ``torchxrayvision/data/siim-pneumothorax-train-rle.csv.gz``:
one row per annotated region, ``-1`` for an image without pneumothorax, relative column-major
RLE at 1024 x 1024. No image comes with it; the masks alone are what this module reads, for
the reader's own check against real data and for the phantom's lesion shapes
(:mod:`harness.phantom.siim_shapes`).

:func:`read_annotations` merges the rows of one image into one set of spans (the union of its
regions) exactly as :func:`harness.data.siim.read_siim` does, and is strict: any malformed row
is an :class:`~ptxplain.errors.InvalidInputError`. :func:`mask_geometry` measures one mask
(area, centroid, bounding-box fill) without drawing it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np

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
from harness.data.siim import LabelRow, read_label_csv
from ptxplain.errors import ConfigError, InvalidInputError

__all__ = [
    "PACKAGED_CSV",
    "SIIM_SHAPE",
    "MaskGeometry",
    "SiimAnnotations",
    "contains",
    "mask_geometry",
    "packaged_csv",
    "read_annotations",
    "span_pixels",
]

PACKAGED_CSV = "siim-pneumothorax-train-rle.csv.gz"
SIIM_SHAPE = (1024, 1024)


def packaged_csv() -> Path:
    """Where the installed torchxrayvision keeps the SIIM-ACR CSV (the package is not imported)."""
    spec = importlib.util.find_spec("torchxrayvision")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / "data" / PACKAGED_CSV
        if path.is_file():
            return path
    raise ConfigError(
        f"the real SIIM-ACR annotations ({PACKAGED_CSV}) come with torchxrayvision, which is "
        "not installed here: run `make setup` (pip install -e '.[dev]')"
    )


@dataclasses.dataclass(frozen=True)
class SiimAnnotations:
    """Every image of the CSV: positives with their merged spans, and the negatives."""

    path: Path
    rows: int  # data rows in the file
    positive_ids: tuple[str, ...]
    spans: tuple[np.ndarray, ...] = dataclasses.field(repr=False)  # union spans per positive
    regions: tuple[int, ...]  # CSV rows (regions) per positive
    negative_ids: tuple[str, ...]
    encoding: EncodingDecision
    shape: tuple[int, int] = SIIM_SHAPE

    @property
    def images(self) -> int:
        return len(self.positive_ids) + len(self.negative_ids)


def _where(path: Path, image_id: str, row: LabelRow) -> str:
    return f"{path.name} line {row.line} (ImageId {image_id})"


def _pairs(path: Path, table: dict[str, list[LabelRow]]) -> dict[str, list[np.ndarray]]:
    """Parsed pairs per image (``[]`` for a negative); any malformed row raises."""
    parsed: dict[str, list[np.ndarray]] = {}
    for image_id, rows in table.items():
        bad = next((r for r in rows if r.error), None)
        if bad is not None:
            raise InvalidInputError(f"{_where(path, image_id, bad)}: {bad.error}")
        negative = [r.text == NEGATIVE for r in rows]
        if any(negative) and not all(negative):
            raise InvalidInputError(f"{path.name}: ImageId {image_id}: -1 and RLE rows together")
        if all(negative):
            parsed[image_id] = []
            continue
        parsed[image_id] = [parse_pairs(r.text, where=_where(path, image_id, r)) for r in rows]
    return parsed


def read_annotations(
    path: Path | None = None, shape: tuple[int, int] = SIIM_SHAPE
) -> SiimAnnotations:
    """Read a SIIM-ACR label CSV (default: the packaged one) without images."""
    path = path or packaged_csv()
    table, orphans = read_label_csv(path)
    if orphans:
        raise InvalidInputError(f"{path.name} line {orphans[0].line}: row has no ImageId")
    parsed = _pairs(path, table)
    n_pixels = shape[0] * shape[1]
    evidence = [RleRow(p, n_pixels) for rows in parsed.values() for p in rows]
    decision = detect_encoding(evidence, fallback=RleEncoding.RELATIVE)
    positives = {i: rows for i, rows in parsed.items() if rows}
    spans = tuple(
        merge_spans(
            spans_from_pairs(p, decision.encoding, n_pixels, where=_where(path, i, r))
            for p, r in zip(rows, table[i], strict=True)
        )
        for i, rows in positives.items()
    )
    return SiimAnnotations(
        path=path,
        rows=sum(len(rows) for rows in table.values()),
        positive_ids=tuple(positives),
        spans=spans,
        regions=tuple(len(rows) for rows in positives.values()),
        negative_ids=tuple(i for i, rows in parsed.items() if not rows),
        encoding=decision,
        shape=shape,
    )


def span_pixels(spans: np.ndarray) -> np.ndarray:
    """The flat (column-major) index of every pixel the spans cover, ascending."""
    lengths = spans[:, 1] - spans[:, 0]
    offsets = np.repeat(spans[:, 0] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(int(lengths.sum()), dtype=np.int64) + offsets


def contains(spans: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Whether each flat (column-major) index lies in one of the sorted, disjoint spans."""
    if spans.size == 0:
        return np.zeros(flat.shape, dtype=bool)
    slot = np.searchsorted(spans[:, 0], flat, side="right") - 1
    inside = slot >= 0
    return inside & (flat < spans[np.clip(slot, 0, None), 1])


@dataclasses.dataclass(frozen=True)
class MaskGeometry:
    """One mask measured on its image: fractions of the image side or area."""

    area: float  # mask pixels / image pixels
    centroid_row: float  # 0 = top edge, 1 = bottom edge
    centroid_col: float  # 0 = left edge, 1 = right edge
    bbox_fill: float  # mask pixels / pixels of its bounding box
    rows: tuple[int, int]  # first and last row (inclusive)
    cols: tuple[int, int]  # first and last column (inclusive)


def mask_geometry(spans: np.ndarray, shape: tuple[int, int]) -> MaskGeometry:
    """Area, centroid and bounding-box fill of a non-empty span mask."""
    flat = span_pixels(spans)
    if flat.size == 0:
        raise InvalidInputError("mask_geometry: the mask is empty")
    rows, cols = flat % shape[0], flat // shape[0]
    box = (int(rows.max() - rows.min()) + 1) * (int(cols.max() - cols.min()) + 1)
    return MaskGeometry(
        area=flat.size / (shape[0] * shape[1]),
        centroid_row=float(rows.mean() + 0.5) / shape[0],
        centroid_col=float(cols.mean() + 0.5) / shape[1],
        bbox_fill=flat.size / box,
        rows=(int(rows.min()), int(rows.max())),
        cols=(int(cols.min()), int(cols.max())),
    )
