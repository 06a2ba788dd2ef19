"""The images a load test sends: synthetic radiographs, or the files of a folder.

* synthetic (the default): ``count`` phantom chest radiographs (harness/phantom/generate.py, DICOM as the
  phantom writes them: some JPEG 2000 / RLE compressed) of ``size`` x ``size`` pixels, each
  sent as the formats in ``formats`` in turn (PNG: the displayed pixels, 8 bits);
* a folder of .png / .jpg / .jpeg / .dcm files, sent as they are (sorted, the first ``count``);
* a data folder with its patient-level split (ptxplain-split.json, `ptxplain data split`):
  only the images of ``split`` (default ``test``), the first ``count``.
"""

from __future__ import annotations

import dataclasses
import io
import tempfile
from pathlib import Path

import numpy as np

from loadtest.scenario import ImageSettings
from ptxplain.errors import ConfigError

__all__ = ["CONTENT_TYPES", "TestImage", "load_images"]

CONTENT_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "dicom": "application/dicom",
}
_SUFFIX_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".dcm": "dicom"}


@dataclasses.dataclass(frozen=True)
class TestImage:
    """One request body: its bytes, format and where it came from."""

    __test__ = False  # not a pytest test class

    name: str
    format: str
    data: bytes = dataclasses.field(repr=False)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8), mode="L").save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def _synthetic(settings: ImageSettings) -> list[TestImage]:
    from harness.data.dicom_io import read_image_pixels
    from harness.phantom.generate import PhantomConfig, generate_phantom

    config = PhantomConfig(n=settings.count, seed=settings.seed, size=settings.size)
    images: list[TestImage] = []
    with tempfile.TemporaryDirectory(prefix="ptxplain-loadtest-") as tmp:
        generate_phantom(config, Path(tmp) / "phantom")
        dicoms = sorted((Path(tmp) / "phantom").rglob("*.dcm"))
        for index, path in enumerate(dicoms):
            fmt = settings.formats[index % len(settings.formats)]
            data = path.read_bytes() if fmt == "dicom" else _png(read_image_pixels(path))
            images.append(TestImage(f"phantom-{index}.{fmt}", fmt, data))
    return images


def _split_paths(folder: Path, split: str) -> list[Path]:
    from harness.data.dataset import ReadOptions
    from harness.data.layouts import open_dataset
    from harness.data.split import SPLITS, load_or_create_split

    if split not in SPLITS:
        raise ConfigError(f"images.split must be one of {SPLITS}, got {split!r}")
    dataset = open_dataset(folder, ReadOptions(state_dir=folder))
    records = load_or_create_split(dataset, folder).records(dataset, split)
    return [record.path for record in records]


def _folder(settings: ImageSettings, folder: Path) -> list[TestImage]:
    from harness.data.split import SPLIT_FILENAME

    if not folder.is_dir():
        raise ConfigError(f"images.folder {folder} is not a folder")
    if (folder / SPLIT_FILENAME).exists():
        paths = _split_paths(folder, settings.split)
    else:
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _SUFFIX_FORMATS)
    paths = [p for p in paths if p.suffix.lower() in _SUFFIX_FORMATS][: settings.count]
    if not paths:
        raise ConfigError(
            f"images.folder {folder}: no .png, .jpg, .jpeg or .dcm files"
            + (f" in split {settings.split!r}" if (folder / SPLIT_FILENAME).exists() else "")
        )
    return [TestImage(p.name, _SUFFIX_FORMATS[p.suffix.lower()], p.read_bytes()) for p in paths]


def load_images(settings: ImageSettings) -> list[TestImage]:
    """The images for a run, in the order the users cycle through them."""
    if settings.folder is not None:
        return _folder(settings, settings.folder)
    return _synthetic(settings)
