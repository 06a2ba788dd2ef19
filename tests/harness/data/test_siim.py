"""SIIM-ACR reader: labels, merged masks, encodings, and every kind of bad input."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import RLELossless

from harness.data.dataset import RleChoice, SkipReason
from harness.data.siim import read_label_csv
from ptxplain.errors import InvalidInputError
from tests.harness.data.data_factory import (
    PATIENT_NAME,
    read_dataset,
    skips_by_reason,
    write_csv,
    write_dicom_file,
)
from tests.harness.data.test_rle import ABSOLUTE_TEXT, MASK, RELATIVE_TEXT

# Two regions of one 4x5 image, each in both encodings; their union is MASK plus pixel 0.
# Region A = pixels 4-5 and 19 (relative "4 2 13 1"), region B = pixels 0 and 9-11.
REGION_A = {"relative": "4 2 13 1", "absolute": "4 2 19 1"}
REGION_B = {"relative": "0 1 8 3", "absolute": "0 1 9 3"}
UNION = MASK.copy()
UNION[0, 0] = True


def _folder(tmp_path: Path, lines: list[str], *, csv_name: str = "train-rle.csv", **kw) -> Path:
    """9.1.1 (patient A, nested deep), 9.1.2 and 9.1.3 (patient B), plus a CSV."""
    root = tmp_path / "data"
    write_dicom_file(root / "train" / "s1" / "x1" / "9.1.1.dcm", sop_uid="9.1.1", patient_id="A")
    write_dicom_file(root / "train" / "s2" / "9.1.2.dcm", sop_uid="9.1.2", patient_id="B")
    write_dicom_file(root / "9.1.3.dcm", sop_uid="9.1.3", patient_id="B", syntax=RLELossless)
    write_csv(root / csv_name, lines, **kw)
    return root


GOOD_STAGE1 = [
    f"9.1.1, {REGION_A['relative']}",
    "9.1.2, -1",
    f"9.1.1, {REGION_B['relative']}",
    "9.1.3, -1",
]


def test_stage1_labels_merged_masks_and_pseudonyms(tmp_path: Path) -> None:
    dataset = read_dataset(_folder(tmp_path, GOOD_STAGE1), tmp_path)
    records = dataset.by_id()
    assert sorted(records) == ["9.1.1", "9.1.2", "9.1.3"]
    assert [int(records[i].label) for i in ("9.1.1", "9.1.2", "9.1.3")] == [1, 0, 0]
    assert np.array_equal(records["9.1.1"].load_mask(), UNION)
    assert records["9.1.1"].mask_pixels == int(UNION.sum()) == 7
    assert not records["9.1.2"].load_mask().any() and records["9.1.2"].shape == (4, 5)
    assert records["9.1.2"].patient == records["9.1.3"].patient != records["9.1.1"].patient
    assert all(r.patient.startswith("p-") for r in dataset.records)
    text = repr(dataset) + str(dataset.summary.to_json())
    assert "SECRET" not in text and PATIENT_NAME not in text and "'B'" not in text
    summary = dataset.summary
    assert summary.label_counts == {"negative": 2, "positive": 1}
    assert summary.n_patients == 2 and summary.skipped == () and summary.rle_encoding == "relative"


def test_records_survive_pickling_for_dataloader_workers(tmp_path: Path) -> None:
    record = read_dataset(_folder(tmp_path, GOOD_STAGE1), tmp_path).by_id()["9.1.1"]
    copy = pickle.loads(pickle.dumps(record))
    assert copy == record and np.array_equal(copy.load_mask(), UNION)


def test_header_without_space_and_stage2_absolute(tmp_path: Path) -> None:
    lines = [
        f"9.1.1,{REGION_A['absolute']}",
        f"9.1.1,{REGION_B['absolute']}",
        "9.1.2,-1",
        "9.1.3,-1",
    ]
    root = _folder(tmp_path, lines, csv_name="stage_2_train.csv", header="ImageId,EncodedPixels")
    dataset = read_dataset(root, tmp_path)
    assert dataset.summary.rle_encoding == "absolute"
    assert np.array_equal(dataset.by_id()["9.1.1"].load_mask(), UNION)


def test_auto_detects_relative_in_a_stage2_named_file(tmp_path: Path) -> None:
    root = _folder(tmp_path, [f"9.1.1,{RELATIVE_TEXT}"], csv_name="stage_2_train.csv")
    dataset = read_dataset(root, tmp_path)
    assert dataset.summary.rle_encoding == "relative"
    assert "fit only relative" in (dataset.summary.rle_reason or "")
    assert np.array_equal(dataset.by_id()["9.1.1"].load_mask(), MASK)


def test_forced_wrong_encoding_skips_with_file_and_line(tmp_path: Path) -> None:
    root = _folder(tmp_path, [f"9.1.1, {ABSOLUTE_TEXT}", "9.1.2, -1", "9.1.3, -1"])
    dataset = read_dataset(root, tmp_path, rle=RleChoice.RELATIVE)
    assert dataset.summary.rle_reason == "forced by --rle"
    assert "9.1.1" not in dataset.by_id()
    (message,) = skips_by_reason(dataset)["bad-rle"]
    assert "train-rle.csv" in message and "line 2" in message and "past the end" in message
    assert read_dataset(root, tmp_path, rle=RleChoice.ABSOLUTE).by_id()["9.1.1"].mask_pixels == 6


def test_missing_csv_is_an_error(tmp_path: Path) -> None:
    root = _folder(tmp_path, [])
    (root / "train-rle.csv").unlink()
    with pytest.raises(InvalidInputError, match="no label CSV"):
        read_dataset(root, tmp_path, layout="siim")


def test_csv_without_the_columns_is_an_error(tmp_path: Path) -> None:
    root = _folder(tmp_path, ["9.1.1,-1"], header="Image,Pixels")
    with pytest.raises(InvalidInputError, match=r"train-rle.csv line 1: header .* lacks ImageId"):
        read_dataset(root, tmp_path)


@pytest.mark.parametrize(
    ("line", "reason", "detail"),
    [
        ("9.1.1, 4 2 9", "bad-rle", "line 2: odd number"),
        ("9.1.1, 4 two", "bad-rle", "line 2: RLE value is not an integer"),
        ("9.1.1, -4 2", "bad-rle", "line 2: negative RLE start"),
        ("9.1.1, 4 2 3 3 8 1", "bad-rle", "line 2: relative RLE runs to pixel 21"),
        ("9.1.1", "malformed-row", "line 2: ImageId 9.1.1: 1 fields, no EncodedPixels"),
        ("9.1.1, ", "malformed-row", "line 2: ImageId 9.1.1"),
        (", 4 2", "malformed-row", "line 2: row has no ImageId"),
    ],
)
def test_bad_rows_skip_the_image_and_name_file_and_line(
    tmp_path: Path, line: str, reason: str, detail: str
) -> None:
    root = _folder(tmp_path, [line, "9.1.2, -1", "9.1.3, -1"])
    dataset = read_dataset(root, tmp_path)
    assert sorted(dataset.by_id()) == ["9.1.2", "9.1.3"]
    messages = skips_by_reason(dataset)[reason]
    assert any("train-rle.csv" in m and detail in m for m in messages), messages
    with pytest.raises(InvalidInputError, match=r"train-rle\.csv"):
        read_dataset(root, tmp_path, strict=True)


def test_a_bad_second_row_drops_the_whole_image(tmp_path: Path) -> None:
    """A merged mask missing one region would be silently wrong; the image is skipped."""
    root = _folder(tmp_path, [f"9.1.1, {REGION_A['relative']}", "9.1.1, 4 2 9", "9.1.2, -1"])
    dataset = read_dataset(root, tmp_path)
    assert "9.1.1" not in dataset.by_id()
    assert any("line 3" in m for m in skips_by_reason(dataset)["bad-rle"])


def test_minus_one_mixed_with_rle_is_a_conflict(tmp_path: Path) -> None:
    root = _folder(tmp_path, [f"9.1.1, {RELATIVE_TEXT}", "9.1.1, -1", "9.1.2, -1", "9.1.3, -1"])
    dataset = read_dataset(root, tmp_path)
    assert "9.1.1" not in dataset.by_id()
    (message,) = skips_by_reason(dataset)["conflicting-rows"]
    assert "lines 2, 3" in message


def test_imageid_without_dicom_and_dicom_without_row(tmp_path: Path) -> None:
    root = _folder(tmp_path, ["9.1.1, -1", "9.1.9, -1", "9.1.2, -1"])
    dataset = read_dataset(root, tmp_path)
    assert sorted(dataset.by_id()) == ["9.1.1", "9.1.2"]
    skips = skips_by_reason(dataset)
    assert skips["no-image"] == [f"{root / 'train-rle.csv'}: line 3: no DICOM for ImageId 9.1.9"]
    assert skips["no-label-row"] == [f"{root / '9.1.3.dcm'}: no row in train-rle.csv"]
    assert dataset.summary.skip_counts() == {"no-image": 1, "no-label-row": 1}


@pytest.mark.parametrize(
    "content",
    [b"not a dicom at all", b"\0" * 128 + b"DICM" + b"\x02\x00\x10"],
    ids=["garbage", "truncated"],
)
def test_corrupt_dicom_is_a_counted_skip(tmp_path: Path, content: bytes) -> None:
    root = _folder(tmp_path, GOOD_STAGE1)
    bad = root / "train" / "broken.dcm"
    bad.write_bytes(content)
    dataset = read_dataset(root, tmp_path)
    assert len(dataset.records) == 3
    (message,) = skips_by_reason(dataset)[SkipReason.CORRUPT_IMAGE.value]
    assert message.startswith(str(bad))


def test_truncated_copy_of_a_real_file(tmp_path: Path) -> None:
    root = _folder(tmp_path, GOOD_STAGE1)
    good = (root / "9.1.3.dcm").read_bytes()
    (root / "9.1.3.dcm").write_bytes(good[:200])
    dataset = read_dataset(root, tmp_path)
    assert "9.1.3" not in dataset.by_id()
    assert "corrupt-image" in skips_by_reason(dataset)


def test_duplicate_sop_instance_uid(tmp_path: Path) -> None:
    root = _folder(tmp_path, GOOD_STAGE1)
    write_dicom_file(root / "zz" / "copy.dcm", sop_uid="9.1.2", patient_id="B")
    dataset = read_dataset(root, tmp_path)
    (message,) = skips_by_reason(dataset)["duplicate-id"]
    assert "copy.dcm" in message and "9.1.2.dcm" in message
    assert dataset.by_id()["9.1.2"].path.name == "9.1.2.dcm"


def test_imageid_may_be_the_file_stem(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_dicom_file(root / "stem-name.dcm", sop_uid="1.2.3.4")
    write_csv(root / "train-rle.csv", ["stem-name, 0 1"])
    (record,) = read_dataset(root, tmp_path).records
    assert record.image_id == "stem-name" and record.mask_pixels == 1


def test_label_csv_reader_keeps_line_numbers(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "train-rle.csv", ["a, -1", "", "b, 1 2", "a, 3 4"])
    rows, orphans = read_label_csv(path)
    assert [r.line for r in rows["a"]] == [2, 5] and rows["b"][0].text == "1 2" and not orphans
