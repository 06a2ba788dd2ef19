"""PNG layout (conversion round trip, bad input) and plain positive/negative folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data.dataset import Dataset
from harness.data.png_layout import write_png_layout
from harness.phantom.generate import PhantomResult
from ptxplain.errors import InvalidInputError
from tests.harness.data.data_factory import read_dataset, skips_by_reason, write_dicom_file


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def _groups(dataset: Dataset) -> set[frozenset[str]]:
    by_patient: dict[str, set[str]] = {}
    for r in dataset.records:
        by_patient.setdefault(r.patient, set()).add(r.image_id)
    return {frozenset(ids) for ids in by_patient.values()}


def test_phantom_to_png_round_trip(tmp_path: Path, phantom_set: tuple[Path, PhantomResult]) -> None:
    root, _ = phantom_set
    source = read_dataset(root, tmp_path)
    labels_csv = write_png_layout(source, tmp_path / "png")
    assert labels_csv.read_text().startswith("image,label,patient\n")
    assert "PHANTOM-" not in labels_csv.read_text()  # pseudonyms only
    converted = read_dataset(tmp_path / "png", tmp_path / "other")
    assert converted.summary.layout == "png" and converted.summary.skipped == ()
    assert [r.image_id for r in converted.records] == [r.image_id for r in source.records]
    for a, b in zip(source.records, converted.records, strict=True):
        assert a.label == b.label and a.mask_pixels == b.mask_pixels and a.shape == b.shape
        assert np.array_equal(a.load_mask(), b.load_mask())
        assert np.abs(a.load_pixels() - b.load_pixels()).max() <= 0.5 / 255 + 1e-6
    assert _groups(converted) == _groups(source)


def _png_folder(tmp_path: Path, csv_text: str) -> Path:
    root = tmp_path / "pngset"
    image = np.full((6, 8), 120)
    mask = np.zeros((6, 8))
    mask[1:3, 2:5] = 255
    _png(root / "images" / "a.png", image)
    _png(root / "masks" / "a.png", mask)
    _png(root / "images" / "b.png", image)
    _png(root / "masks" / "b.png", np.zeros((6, 8)))
    _png(root / "images" / "c.png", image)  # no mask file: fine for a negative
    (root / "labels.csv").write_text(csv_text)
    return root


def test_png_layout_reads_labels_masks_and_patients(tmp_path: Path) -> None:
    root = _png_folder(
        tmp_path, "new_filename,has_pneumo,PatientID\na.png,1,X\nb.png,0,X\nc,false,Y\n"
    )
    dataset = read_dataset(root, tmp_path)
    records = dataset.by_id()
    assert sorted(records) == ["a", "b", "c"] and dataset.summary.skipped == ()
    assert records["a"].mask_pixels == 6 and records["a"].load_mask()[1:3, 2:5].all()
    assert records["c"].mask_pixels == 0 and records["c"].shape == (6, 8)
    assert records["a"].patient == records["b"].patient != records["c"].patient


def test_png_layout_bad_rows_and_unlisted_images(tmp_path: Path) -> None:
    csv_text = "image,label\na.png,maybe\nb.png,0\nb.png,1\nzzz.png,0\n"
    dataset = read_dataset(_png_folder(tmp_path, csv_text), tmp_path)
    assert sorted(dataset.by_id()) == ["b"]
    skips = skips_by_reason(dataset)
    assert any("line 2" in m and "'maybe'" in m for m in skips["malformed-row"])
    assert any("line 4" in m for m in skips["duplicate-id"])
    assert any("line 5: no file images/zzz.png" in m for m in skips["no-image"])
    assert any(m.endswith("c.png: no row in labels.csv") for m in skips["no-label-row"])
    assert dataset.summary.notes == ("4 images have no patient id; each is its own patient",)


def test_png_layout_missing_or_headerless_csv(tmp_path: Path) -> None:
    root = _png_folder(tmp_path, "file,label\n")
    with pytest.raises(
        InvalidInputError, match=r"labels\.csv line 1: no column named any of image"
    ):
        read_dataset(root, tmp_path)
    (root / "labels.csv").unlink()
    with pytest.raises(InvalidInputError, match="no labels CSV"):
        read_dataset(root, tmp_path)


def test_png_layout_mask_contradictions(tmp_path: Path) -> None:
    root = _png_folder(tmp_path, "image,label\na.png,0\nb.png,1\nc.png,1\n")
    _png(root / "masks" / "c.png", np.zeros((5, 8)))
    dataset = read_dataset(root, tmp_path)
    assert not dataset.records
    messages = "\n".join(skips_by_reason(dataset)["mask-mismatch"])
    assert "label 0 but the mask has 6 pixels" in messages
    assert "label 1 but the mask is empty" in messages
    assert "mask is 5x8, image is 6x8" in messages


def _folders(tmp_path: Path) -> Path:
    root = tmp_path / "folders"
    image = np.full((6, 8), 90)
    _png(root / "positive" / "p1.png", image)
    _png(root / "positive" / "p2.png", image)
    mask = np.zeros((6, 8))
    mask[0, 0] = 1
    _png(root / "masks" / "p1.png", mask)
    _png(root / "negative" / "n1.png", image)
    write_dicom_file(root / "negative" / "n2.dcm", sop_uid="1.2.3", patient_id="SECRET-9")
    (root / "negative" / "notes.txt").write_text("hello")
    (root / "negative" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    return root


def test_folder_layout(tmp_path: Path) -> None:
    dataset = read_dataset(_folders(tmp_path), tmp_path)
    records = dataset.by_id()
    assert sorted(records) == ["n1", "n2", "p1", "p2"]
    assert [int(records[i].label) for i in ("n1", "n2", "p1", "p2")] == [0, 0, 1, 1]
    assert records["p1"].mask_pixels == 1 and records["p1"].load_mask()[0, 0]
    assert records["p2"].mask_pixels is None and records["p2"].load_mask() is None
    assert records["n2"].shape == (4, 5) and records["n2"].load_mask().shape == (4, 5)
    assert records["n2"].load_pixels().shape == (4, 5)
    assert dataset.summary.skip_counts() == {"corrupt-image": 1, "unsupported-file": 1}
    assert "SECRET" not in str(dataset)


def test_folder_layout_strict_mode_fails_on_the_first_problem(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"broken.png: unreadable image"):
        read_dataset(_folders(tmp_path), tmp_path, strict=True)


def test_unknown_layout_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="unrecognised layout"):
        read_dataset(tmp_path / "empty", tmp_path)
    with pytest.raises(InvalidInputError, match="no such data folder"):
        read_dataset(tmp_path / "missing", tmp_path)
