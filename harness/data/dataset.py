"""Common record types of the study harness's data layer, and :func:`open_dataset`.

Every reader (SIIM-ACR DICOM+CSV in :mod:`harness.data.siim`, PNG and plain folders in
:mod:`harness.data.png_layout`) returns a :class:`Dataset`: one :class:`ImageRecord` per usable
image plus a :class:`DatasetSummary` that counts labels and lists every skipped file with its
reason. Masks load lazily (``record.load_mask()``) and always have the image's shape.
Patient ids are pseudonyms (:mod:`harness.data.pseudonym`) everywhere.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from harness.data.rle import RleEncoding, spans_to_mask
from ptxplain.errors import InvalidInputError

__all__ = [
    "Dataset",
    "DatasetSummary",
    "EmptyMask",
    "ImageRecord",
    "Label",
    "MaskSource",
    "NoMask",
    "ReadOptions",
    "RleChoice",
    "SkipLog",
    "SkipReason",
    "SkippedItem",
    "SpanMask",
    "summarize",
]


class Label(enum.IntEnum):
    NEGATIVE = 0
    POSITIVE = 1


class RleChoice(enum.StrEnum):
    AUTO = "auto"
    RELATIVE = RleEncoding.RELATIVE.value
    ABSOLUTE = RleEncoding.ABSOLUTE.value


class MaskSource(Protocol):
    """Loads one mask on demand: bool (rows, cols), or ``None`` when no mask is known."""

    def __call__(self) -> np.ndarray | None: ...


@dataclasses.dataclass(frozen=True)
class SpanMask:
    """A mask held as merged column-major ``[start, end)`` spans (from RLE)."""

    spans: np.ndarray = dataclasses.field(repr=False)
    shape: tuple[int, int]

    def __call__(self) -> np.ndarray:
        return spans_to_mask(self.spans, self.shape)


@dataclasses.dataclass(frozen=True)
class EmptyMask:
    """A known-empty mask (a negative image)."""

    shape: tuple[int, int]

    def __call__(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=bool)


@dataclasses.dataclass(frozen=True)
class NoMask:
    """A positive image whose lesion was never outlined."""

    def __call__(self) -> None:
        return None


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One usable image. ``patient`` is a pseudonym; ``shape`` is (rows, cols)."""

    image_id: str
    path: Path
    patient: str
    label: Label
    shape: tuple[int, int]
    mask_pixels: int | None
    mask_source: MaskSource = dataclasses.field(repr=False, compare=False)

    def load_mask(self) -> np.ndarray | None:
        mask = self.mask_source()
        if mask is not None and mask.shape != self.shape:
            raise InvalidInputError(f"{self.path}: mask {mask.shape} != image {self.shape}")
        return mask

    def load_pixels(self) -> np.ndarray:
        """The image as float32 (rows, cols) in [0, 1]."""
        from harness.data.dicom_io import read_image_pixels

        return read_image_pixels(self.path)


class SkipReason(enum.StrEnum):
    NO_LABEL_ROW = "no-label-row"
    NO_IMAGE = "no-image"
    BAD_RLE = "bad-rle"
    MALFORMED_ROW = "malformed-row"
    CONFLICTING_ROWS = "conflicting-rows"
    CORRUPT_IMAGE = "corrupt-image"
    DUPLICATE_ID = "duplicate-id"
    MASK_MISMATCH = "mask-mismatch"
    UNSUPPORTED_FILE = "unsupported-file"


@dataclasses.dataclass(frozen=True)
class SkippedItem:
    reason: SkipReason
    path: str
    detail: str


class SkipLog:
    """Collects counted skips; in strict mode the first one raises instead."""

    def __init__(self, *, strict: bool) -> None:
        self.strict = strict
        self.items: list[SkippedItem] = []

    def add(self, reason: SkipReason, path: Path | str, detail: str) -> None:
        if self.strict:
            raise InvalidInputError(f"{path}: {detail} ({reason.value}; strict mode)")
        self.items.append(SkippedItem(reason, str(path), detail))


@dataclasses.dataclass(frozen=True)
class DatasetSummary:
    layout: str
    root: str
    n_images: int
    label_counts: dict[str, int]
    n_patients: int
    skipped: tuple[SkippedItem, ...]
    rle_encoding: str | None = None
    rle_reason: str | None = None
    notes: tuple[str, ...] = ()

    def skip_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(item.reason.value for item in self.skipped).items()))

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["skip_counts"] = self.skip_counts()
        data["skipped"] = [
            {"reason": s.reason.value, "path": s.path, "detail": s.detail} for s in self.skipped
        ]
        return data


@dataclasses.dataclass(frozen=True)
class Dataset:
    records: tuple[ImageRecord, ...]
    summary: DatasetSummary

    def by_id(self) -> dict[str, ImageRecord]:
        return {r.image_id: r for r in self.records}


def summarize(
    layout: str, root: Path, records: list[ImageRecord], skips: SkipLog, **extra: Any
) -> Dataset:
    """Sort records by image id and count them into a :class:`Dataset`."""
    ordered = tuple(sorted(records, key=lambda r: r.image_id))
    counts = Counter(r.label.name.lower() for r in ordered)
    summary = DatasetSummary(
        layout=layout,
        root=str(root),
        n_images=len(ordered),
        label_counts={"negative": counts["negative"], "positive": counts["positive"]},
        n_patients=len({r.patient for r in ordered}),
        skipped=tuple(skips.items),
        **extra,
    )
    return Dataset(ordered, summary)


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """How to read a data folder (resolved once by the caller, passed down)."""

    layout: str = "auto"
    rle: RleChoice = RleChoice.AUTO
    csv: Path | None = None
    strict: bool = False
    state_dir: Path | None = None
    progress: bool = False
