"""RLE codec: hand-worked examples in both encodings, error cases, merging, detection."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data.rle import (
    EncodingDecision,
    RleEncoding,
    RleRow,
    decode,
    detect_encoding,
    encode,
    merge_spans,
    parse_pairs,
    spans_from_pairs,
    spans_to_mask,
)
from ptxplain.errors import InvalidInputError

REL, ABS = RleEncoding.RELATIVE, RleEncoding.ABSOLUTE

# A 4x5 mask (4 rows, 5 columns). Column-major flat index = col * 4 + row:
#
#          col 0  col 1  col 2  col 3  col 4
#   row 0    0      1      0      0      0        index of (r, c): c*4 + r
#   row 1    0      1      1      0      0        (0,1)=4  (1,1)=5
#   row 2    0      0      1      0      0        (1,2)=9  (2,2)=10  (3,2)=11
#   row 3    0      0      1      0      1        (3,4)=19 (the very last pixel)
#
# Runs (absolute [start, end)): [4, 6) length 2, [9, 12) length 3, [19, 20) length 1.
#   absolute: starts counted from pixel 0          -> "4 2 9 3 19 1"
#   relative: 4 from 0; 9 - 6 = 3; 19 - 12 = 7     -> "4 2 3 3 7 1"
MASK = np.array(
    [
        [0, 1, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 1, 0, 1],
    ],
    dtype=bool,
)
ABSOLUTE_TEXT = "4 2 9 3 19 1"
RELATIVE_TEXT = "4 2 3 3 7 1"


def test_hand_worked_example_encodes_in_both_encodings() -> None:
    assert encode(MASK, ABS) == ABSOLUTE_TEXT
    assert encode(MASK, REL) == RELATIVE_TEXT


def test_hand_worked_example_decodes_in_both_encodings() -> None:
    assert np.array_equal(decode(ABSOLUTE_TEXT, (4, 5), ABS, where="t"), MASK)
    assert np.array_equal(decode(RELATIVE_TEXT, (4, 5), REL, where="t"), MASK)


def test_wrong_encoding_gives_a_different_mask_or_an_error() -> None:
    # Read as absolute, the relative text's second run starts (3) before the first ends (6).
    with pytest.raises(InvalidInputError, match="overlapping or out-of-order"):
        decode(RELATIVE_TEXT, (4, 5), ABS, where="t")
    # Read as relative, the absolute text runs to 6 + 9 + 3 + 19 + 1 = 27 > 20 pixels.
    with pytest.raises(InvalidInputError, match="past the end of the image"):
        decode(ABSOLUTE_TEXT, (4, 5), REL, where="t")


def test_empty_mask_is_minus_one() -> None:
    empty = np.zeros((4, 5), dtype=bool)
    assert encode(empty, REL) == encode(empty, ABS) == "-1"
    assert not decode(" -1 ", (4, 5), REL, where="t").any()


def test_first_pixel_only() -> None:
    mask = np.zeros((4, 5), dtype=bool)
    mask[0, 0] = True
    assert encode(mask, REL) == encode(mask, ABS) == "0 1"


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (16, 9), (64, 64)])
@pytest.mark.parametrize("encoding", [REL, ABS])
def test_random_masks_round_trip(shape: tuple[int, int], encoding: RleEncoding) -> None:
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    for density in (0.05, 0.5, 0.95):
        mask = rng.random(shape) < density
        assert np.array_equal(decode(encode(mask, encoding), shape, encoding, where="t"), mask)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4 2 9", "odd number of RLE values"),
        ("4 2 x 3", "not an integer"),
        ("4 2 9.5 3", "not an integer"),
        ("-4 2", "negative RLE start"),
        ("4 0", "run length 0"),
        ("", "empty EncodedPixels"),
    ],
)
def test_malformed_values_name_the_place(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        parse_pairs(text, where="train-rle.csv line 7")
    assert "train-rle.csv line 7" in str(info.value)


def test_run_past_the_end_names_the_place() -> None:
    pairs = parse_pairs("4 2 3 3 8 1", where="x")  # relative: last run ends at 21 > 20
    with pytest.raises(InvalidInputError, match=r"line 3: relative RLE runs to pixel 21"):
        spans_from_pairs(pairs, REL, 20, where="line 3")
    with pytest.raises(InvalidInputError, match="past the end"):
        spans_from_pairs(parse_pairs("19 2", where="x"), ABS, 20, where="line 3")


def test_absolute_runs_must_not_overlap_or_go_backwards() -> None:
    for text in ("4 3 5 2", "9 3 4 2"):
        with pytest.raises(InvalidInputError, match="run 1 starts at"):
            spans_from_pairs(parse_pairs(text, where="x"), ABS, 20, where="line 2")
    touching = spans_from_pairs(parse_pairs("4 2 6 1", where="x"), ABS, 20, where="x")
    assert touching.tolist() == [[4, 6], [6, 7]]


def test_merge_spans_is_the_union() -> None:
    a = np.array([[0, 3], [10, 12]])
    b = np.array([[2, 5], [12, 13], [20, 21]])
    merged = merge_spans([a, b])
    assert merged.tolist() == [[0, 5], [10, 13], [20, 21]]
    expected = spans_to_mask(a, (4, 6)) | spans_to_mask(b, (4, 6))
    assert np.array_equal(spans_to_mask(merged, (4, 6)), expected)
    assert merge_spans([]).shape == (0, 2)


def _row(text: str, n: int | None = 20) -> RleRow:
    return RleRow(parse_pairs(text, where="t"), n)


def test_detect_relative_file() -> None:
    decision = detect_encoding([_row(RELATIVE_TEXT), _row("3 1")], fallback=ABS)
    assert decision.encoding is REL and decision.relative_only == 1
    # Unknown image size: the overlap test alone still shows it is relative.
    assert detect_encoding([_row(RELATIVE_TEXT, None)], fallback=ABS).encoding is REL


def test_detect_absolute_file() -> None:
    decision = detect_encoding([_row(ABSOLUTE_TEXT), _row("0 2")], fallback=REL)
    assert decision.encoding is ABS and decision.absolute_only == 1


def test_detect_ambiguous_uses_fallback_and_says_so() -> None:
    # [0,1) and [5,6) as absolute; [0,1) and [6,7) as relative: both fit 20 pixels.
    decision = detect_encoding([_row("0 1 5 1")], fallback=ABS)
    assert decision == EncodingDecision(ABS, decision.reason, ambiguous=1)
    assert "ambiguous" in decision.reason and "--rle" in decision.reason


def test_detect_single_run_rows_are_no_evidence() -> None:
    decision = detect_encoding([_row("4 2"), _row("9 3")], fallback=REL)
    assert decision.encoding is REL and "decode identically" in decision.reason


def test_detect_conflict_takes_the_majority() -> None:
    rows = [_row(RELATIVE_TEXT), _row(RELATIVE_TEXT), _row(ABSOLUTE_TEXT)]
    decision = detect_encoding(rows, fallback=ABS)
    assert decision.encoding is REL and "conflicting" in decision.reason
    tie = detect_encoding([_row(RELATIVE_TEXT), _row(ABSOLUTE_TEXT)], fallback=ABS)
    assert tie.encoding is ABS
