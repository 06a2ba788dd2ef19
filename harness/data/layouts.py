"""Which layout a data folder holds, and reading it: SIIM-ACR (:mod:`harness.data.siim`), PNG
and plain folders (:mod:`harness.data.png_layout`). The readers build the record types of
:mod:`harness.data.dataset`; this module sits above both.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.data import png_layout, siim
from harness.data.dataset import Dataset, ReadOptions
from harness.data.pseudonym import load_or_create_key
from ptxplain.errors import InvalidInputError, InvalidOptionError

__all__ = ["open_dataset"]


def _readers() -> dict[str, tuple[Callable[[Path], bool], Callable[..., Dataset]]]:
    return {
        "siim": (siim.looks_like_siim, siim.read_siim),
        "png": (png_layout.looks_like_png_layout, png_layout.read_png_layout),
        "folders": (png_layout.looks_like_folder_layout, png_layout.read_folder_layout),
    }


def open_dataset(root: Path, options: ReadOptions) -> Dataset:
    """Read a data folder of any supported layout (``options.layout`` or detected)."""
    if not root.is_dir():
        raise InvalidInputError(f"{root}: no such data folder")
    readers = _readers()
    layout = options.layout
    if layout == "auto":
        layout = next((name for name, (test, _) in readers.items() if test(root)), "")
        if not layout:
            raise InvalidInputError(
                f"{root}: unrecognised layout (expected train-rle.csv or stage_2_train.csv, "
                "images/ + masks/, or positive/ + negative/; see docs/data.md)"
            )
    if layout not in readers:
        raise InvalidOptionError(f"--layout {layout!r}: choose auto, {', '.join(readers)}")
    pseudonymize = load_or_create_key(options.state_dir or root)
    return readers[layout][1](root, options, pseudonymize)
