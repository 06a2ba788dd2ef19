"""Run-length encoding of binary masks as the SIIM-ACR pneumothorax CSVs use it.

Both encodings list ``start length`` pairs over the pixels of the mask in **column-major**
order (pixel ``(row, col)`` has flat index ``col * rows + row``, i.e. NumPy ``order="F"``):

* :attr:`RleEncoding.RELATIVE` (stage 1, ``train-rle.csv``): each start counts the pixels
  between the END of the previous run and the start of this one (the first start counts from
  pixel 0). Example, a 4x5 mask (rows x cols) with pixels 5-6 and 9-11 set: ``5 2 2 3``.
* :attr:`RleEncoding.ABSOLUTE` (stage 2, ``stage_2_train.csv``): each start is the flat index
  of the run's first pixel, counted from pixel 0. The same mask: ``5 2 9 3``.

An empty mask is written ``-1`` (the CSVs' "no pneumothorax"). Internally runs are held as an
``(k, 2)`` int64 array of absolute ``[start, end)`` intervals ("spans").

:func:`detect_encoding` decides which encoding a file uses from all of its rows; see its
docstring for the rule. Every malformed input raises :class:`~ptxplain.errors.InvalidInputError`
with a message naming ``where`` (file and line) — never a silently wrong mask.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable

import numpy as np

from ptxplain.errors import InvalidInputError

__all__ = [
    "NEGATIVE",
    "EncodingDecision",
    "RleEncoding",
    "RleRow",
    "decode",
    "detect_encoding",
    "encode",
    "merge_spans",
    "parse_pairs",
    "spans_from_pairs",
    "spans_to_mask",
]

NEGATIVE = "-1"


class RleEncoding(enum.StrEnum):
    RELATIVE = "relative"
    ABSOLUTE = "absolute"


def parse_pairs(text: str, *, where: str) -> np.ndarray:
    """``"s0 l0 s1 l1 ..."`` as an ``(k, 2)`` int64 array; checks syntax, signs and lengths."""
    tokens = text.split()
    if not tokens:
        raise InvalidInputError(f"{where}: empty EncodedPixels (write -1 for no pneumothorax)")
    if len(tokens) % 2:
        raise InvalidInputError(f"{where}: odd number of RLE values ({len(tokens)})")
    try:
        values = np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError as exc:
        raise InvalidInputError(f"{where}: RLE value is not an integer ({exc})") from exc
    pairs = values.reshape(-1, 2)
    if (pairs[:, 0] < 0).any():
        raise InvalidInputError(f"{where}: negative RLE start {int(pairs[:, 0].min())}")
    if (pairs[:, 1] < 1).any():
        raise InvalidInputError(f"{where}: RLE run length {int(pairs[:, 1].min())} (must be >= 1)")
    return pairs


def _relative_ends(pairs: np.ndarray) -> np.ndarray:
    return np.cumsum(pairs[:, 0] + pairs[:, 1])


def spans_from_pairs(
    pairs: np.ndarray, encoding: RleEncoding, n_pixels: int, *, where: str
) -> np.ndarray:
    """Absolute ``[start, end)`` spans of validated pairs; rejects overlaps and overruns."""
    if encoding is RleEncoding.RELATIVE:
        ends = _relative_ends(pairs)
        starts = ends - pairs[:, 1]
    else:
        starts = pairs[:, 0]
        ends = starts + pairs[:, 1]
        bad = np.flatnonzero(starts[1:] < ends[:-1])
        if bad.size:
            i = int(bad[0]) + 1
            raise InvalidInputError(
                f"{where}: run {i} starts at {int(starts[i])}, before the end of run {i - 1} "
                f"({int(ends[i - 1])}): overlapping or out-of-order absolute runs"
            )
    if ends.size and int(ends[-1]) > n_pixels:
        raise InvalidInputError(
            f"{where}: {encoding.value} RLE runs to pixel {int(ends[-1])}, past the end of the "
            f"image ({n_pixels} pixels)"
        )
    return np.stack([starts, ends], axis=1)


def merge_spans(spans: Iterable[np.ndarray]) -> np.ndarray:
    """The union of several span arrays as sorted, disjoint, non-touching spans."""
    parts = [s for s in spans if s.size]
    if not parts:
        return np.zeros((0, 2), dtype=np.int64)
    allspans = np.concatenate(parts)
    allspans = allspans[np.argsort(allspans[:, 0], kind="stable")]
    running_end = np.maximum.accumulate(allspans[:, 1])
    new_group = np.concatenate([[True], allspans[1:, 0] > running_end[:-1]])
    group = np.cumsum(new_group) - 1
    starts = allspans[new_group, 0]
    ends = np.zeros(starts.size, dtype=np.int64)
    np.maximum.at(ends, group, allspans[:, 1])
    return np.stack([starts, ends], axis=1)


def spans_to_mask(spans: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A bool mask of ``shape`` (rows, cols) with the column-major spans set."""
    n = shape[0] * shape[1]
    edges = np.zeros(n + 1, dtype=np.int32)
    np.add.at(edges, spans[:, 0], 1)
    np.add.at(edges, spans[:, 1], -1)
    flat = np.cumsum(edges[:n]) > 0
    return flat.reshape(shape, order="F")


def decode(text: str, shape: tuple[int, int], encoding: RleEncoding, *, where: str) -> np.ndarray:
    """One ``EncodedPixels`` value (``-1`` = empty) as a bool mask of ``shape``."""
    if text.strip() == NEGATIVE:
        return np.zeros(shape, dtype=bool)
    pairs = parse_pairs(text, where=where)
    spans = spans_from_pairs(pairs, encoding, shape[0] * shape[1], where=where)
    return spans_to_mask(spans, shape)


def encode(mask: np.ndarray, encoding: RleEncoding) -> str:
    """A 2-D mask (non-zero = set) as an ``EncodedPixels`` string; ``-1`` when empty."""
    flat = np.asarray(mask).ravel(order="F") != 0
    padded = np.concatenate([[False], flat, [False]])
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = changes[0::2], changes[1::2]
    if starts.size == 0:
        return NEGATIVE
    lengths = ends - starts
    if encoding is RleEncoding.RELATIVE:
        starts = starts - np.concatenate([[0], ends[:-1]])
    pairs = np.stack([starts, lengths], axis=1)
    return " ".join(str(int(v)) for v in pairs.ravel())


@dataclasses.dataclass(frozen=True)
class RleRow:
    """One parsed CSV row as evidence for :func:`detect_encoding`.

    ``n_pixels`` is the image's pixel count, or ``None`` when the image is unknown.
    """

    pairs: np.ndarray
    n_pixels: int | None


@dataclasses.dataclass(frozen=True)
class EncodingDecision:
    """Which encoding a file uses, and why (``reason`` is shown in summaries)."""

    encoding: RleEncoding
    reason: str
    relative_only: int = 0
    absolute_only: int = 0
    ambiguous: int = 0
    fits_neither: int = 0


def _fits(row: RleRow) -> tuple[bool, bool]:
    """Whether a multi-run row is valid as (relative, absolute) RLE."""
    starts, lengths = row.pairs[:, 0], row.pairs[:, 1]
    ends = starts + lengths
    absolute = bool((starts[1:] >= ends[:-1]).all())
    limit = row.n_pixels
    if limit is not None:
        absolute = absolute and int(ends[-1]) <= limit
        return int(_relative_ends(row.pairs)[-1]) <= limit, absolute
    return True, absolute


def detect_encoding(rows: Iterable[RleRow], *, fallback: RleEncoding) -> EncodingDecision:
    """Decide relative vs absolute from every row of a file.

    A row with one run decodes identically either way and is no evidence. A multi-run row is
    *relative-only* when its absolute reading overlaps or overruns the image, *absolute-only*
    when its relative reading overruns the image. Rule: if only one kind of evidence exists,
    that encoding wins; if both exist, the majority wins (a tie goes to ``fallback``), and rows
    that do not fit the winner fail later with their own error. With no evidence ``fallback`` is
    used (the caller picks it from the file name: stage-2 name -> absolute, else relative).
    """
    counts = {"relative_only": 0, "absolute_only": 0, "ambiguous": 0, "fits_neither": 0}
    for row in rows:
        if row.pairs.shape[0] < 2:
            continue
        key = {
            (True, True): "ambiguous",
            (True, False): "relative_only",
            (False, True): "absolute_only",
            (False, False): "fits_neither",
        }[_fits(row)]
        counts[key] += 1
    encoding, reason = _decide(counts, fallback)
    return EncodingDecision(encoding, reason, **counts)


def _decide(counts: dict[str, int], fallback: RleEncoding) -> tuple[RleEncoding, str]:
    rel, ab, amb = counts["relative_only"], counts["absolute_only"], counts["ambiguous"]
    if rel and not ab:
        return RleEncoding.RELATIVE, f"{rel} multi-run rows fit only relative RLE"
    if ab and not rel:
        return RleEncoding.ABSOLUTE, f"{ab} multi-run rows fit only absolute RLE"
    if rel and ab:
        winner = (
            fallback if rel == ab else (RleEncoding.RELATIVE if rel > ab else RleEncoding.ABSOLUTE)
        )
        return winner, (
            f"conflicting rows: {rel} fit only relative, {ab} only absolute; chose {winner.value} "
            "(majority, tie -> file-name rule); rows that do not fit it are reported"
        )
    if amb:
        return fallback, (
            f"ambiguous: {amb} multi-run rows fit both encodings; chose {fallback.value} by the "
            "file-name rule (force one with --rle)"
        )
    return fallback, "no row has more than one run, so both encodings decode identically"
