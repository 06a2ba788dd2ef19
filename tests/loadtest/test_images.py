"""loadtest/images.py: synthetic radiographs as PNG and DICOM, or a folder's files."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from PIL import Image

from loadtest.images import load_images
from loadtest.scenario import ImageSettings
from ptxplain.errors import ConfigError


def test_synthetic_images_alternate_png_and_dicom() -> None:
    images = load_images(ImageSettings(size=64, count=3, formats=("png", "dicom")))
    assert [i.format for i in images] == ["png", "dicom", "png"]
    png = Image.open(io.BytesIO(images[0].data))
    assert png.format == "PNG" and png.size == (64, 64) and png.mode == "L"
    dicom = pydicom.dcmread(io.BytesIO(images[1].data))
    assert (dicom.Rows, dicom.Columns) == (64, 64)
    assert images[1].content_type == "application/dicom"


def test_a_folder_of_files_is_sent_as_is(tmp_path: Path) -> None:
    Image.new("L", (70, 80)).save(tmp_path / "b.png")
    (tmp_path / "notes.txt").write_text("not an image")
    Image.new("L", (70, 80)).save(tmp_path / "a.jpg")
    images = load_images(ImageSettings(folder=tmp_path, count=5))
    assert [(i.name, i.format) for i in images] == [("a.jpg", "jpeg"), ("b.png", "png")]
    assert images[1].data == (tmp_path / "b.png").read_bytes()


def test_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no \.png"):
        load_images(ImageSettings(folder=tmp_path))
