"""The pixel digests of what a run saw, written beside its weights: ``train-digests.bin``.

"Trained on" means seen while fitting or choosing the model: the train split's images (the
weights were fitted on them) and the validation split's (they picked the best epoch and the
decision threshold). Both go into the file, in their own sections
(:func:`ptxplain.imaging.digest.write_digests`); the serving handler treats both as seen and
flags a request whose decoded pixels match one (``ExplainResult.seen_in_training``), and
``ptxplain evaluate`` refuses a test split containing any.

The digests come from :func:`harness.train.data.load_images`, which hashes each decoded image
before letterboxing it, so no image is read twice. The file's count and SHA-256 go into the
checkpoint's :class:`~ptxplain.models.meta.ModelMeta` (``training_digests``,
``training_digests_sha256``); ``ptxplain archive`` copies the file into the ``.mar``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Protocol

from harness.train.data import ImageTensors
from ptxplain.imaging.digest import DIGESTS_FILENAME, file_sha256, read_digests, write_digests
from ptxplain.models.meta import ModelMeta

__all__ = ["DIGESTS_FILENAME", "SeenImages", "record_digests"]


class SeenImages(Protocol):
    """What a run read: its train and val images (``harness.train.run.TrainImages``)."""

    @property
    def train(self) -> ImageTensors: ...

    @property
    def val(self) -> ImageTensors: ...


def record_digests(out: Path, images: SeenImages, meta: ModelMeta) -> ModelMeta:
    """Write ``out/train-digests.bin`` for ``images``; ``meta`` with its count and SHA-256."""
    path = write_digests(out / DIGESTS_FILENAME, images.train.digests, images.val.digests)
    return dataclasses.replace(
        meta,
        training_digests=len(read_digests(path)),
        training_digests_sha256=file_sha256(path),
    )
