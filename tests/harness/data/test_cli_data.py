"""`ptxplain phantom` and `ptxplain data inspect | split | to-png`, run through the real CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.data.pseudonym import KEY_FILENAME
from harness.data.split import SPLIT_FILENAME
from harness.phantom.generate import PhantomResult
from ptxplain.cli import main


def test_phantom_command_writes_a_readable_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ph"
    args = ["phantom", "--out", str(out), "--n", "8", "--seed", "2", "--size", "64"]
    assert main([*args, "--confounder-fraction", "1", "--compressed-fraction", "0.25"]) == 0
    printed = capsys.readouterr().out
    assert "8 images (4 positive, 4 with a drain, 2 compressed)" in printed
    assert len(list(out.rglob("*.dcm"))) == 8 and (out / "train-rle.csv").is_file()
    assert main([*args[:2], str(tmp_path / "bad"), *args[3:], "--positive-fraction", "2"]) == 2
    assert "--positive-fraction" in capsys.readouterr().err


def test_inspect_json_lists_images_and_summary_without_identifiers(
    tmp_path: Path, phantom_set: tuple[Path, PhantomResult], capsys: pytest.CaptureFixture[str]
) -> None:
    root, result = phantom_set
    assert main(["data", "inspect", str(root), "--json", "--state-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert len(report["images"]) == 40
    row = report["images"][0]
    assert set(row) == {"image_id", "patient", "label", "mask_pixels", "rows", "columns"}
    assert row["patient"].startswith("p-") and (row["rows"], row["columns"]) == (96, 96)
    truth = {c.image_id: (c.label, int(c.mask.sum())) for c in result.cases}
    assert all(truth[r["image_id"]] == (r["label"], r["mask_pixels"]) for r in report["images"])
    summary = report["summary"]
    assert summary["label_counts"] == {"negative": 20, "positive": 20}
    assert summary["rle_encoding"] == "relative" and summary["skip_counts"] == {}
    assert "PHANTOM-" not in captured.out + captured.err and "Phantom^" not in captured.out
    assert (tmp_path / KEY_FILENAME).is_file() and not (root / KEY_FILENAME).exists()


def test_inspect_text_reports_skips(
    tmp_path: Path, phantom_set: tuple[Path, PhantomResult], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(phantom_set[0], root)
    csv_path = root / "train-rle.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text(
        "\n".join([*lines[:-1], "1.2.3.404, -1"]) + "\n"
    )  # last image loses its row
    assert main(["data", "inspect", str(root), "--rle", "relative"]) == 0
    out = capsys.readouterr().out
    assert "siim layout: 39 images" in out and "RLE: relative (forced by --rle)" in out
    assert "skipped: 2 (no-image 1, no-label-row 1)" in out
    assert f"no-image: {csv_path}: line {len(lines)}: no DICOM for ImageId 1.2.3.404" in out


def test_split_command_creates_then_reuses(
    tmp_path: Path, phantom_set: tuple[Path, PhantomResult], capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["data", "split", str(phantom_set[0]), "--state-dir", str(tmp_path)]
    assert main(base) == 0
    first = capsys.readouterr().out
    assert "seed 0, fractions (0.7, 0.15, 0.15)" in first
    stored = json.loads((tmp_path / SPLIT_FILENAME).read_text())
    assert sum(c["images"] for c in stored["counts"].values()) == 40
    assert main(base) == 0 and capsys.readouterr().out == first
    assert main([*base, "--seed", "9"]) == 2
    assert "delete it to re-split" in capsys.readouterr().err


def test_missing_csv_exits_2_naming_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "d").mkdir()
    assert main(["data", "inspect", str(tmp_path / "d"), "--layout", "siim"]) == 2
    assert f"{tmp_path / 'd'}: no label CSV" in capsys.readouterr().err


def test_to_png_command(tmp_path: Path, phantom_set: tuple[Path, PhantomResult]) -> None:
    out = tmp_path / "png"
    assert (
        main(
            ["data", "to-png", str(phantom_set[0]), "--out", str(out), "--state-dir", str(tmp_path)]
        )
        == 0
    )
    assert (
        len(list((out / "images").iterdir())) == 40 and len(list((out / "masks").iterdir())) == 40
    )
