"""What training reads: the train and val images of the stored patient-level split, letterboxed.

The split comes from :func:`harness.data.split.load_or_create_split` (the same file ``ptxplain
evaluate`` later reads its test images from). Only train and val records are ever returned;
test images are not loaded, not even their pixels. Every image goes through the server's own
:func:`ptxplain.imaging.preprocess.letterbox` (whole image, aspect kept, zero padding) once, at the
model's input size, and is held in memory as a (N, S, S) float32 tensor. The decoded array is
also hashed (:func:`ptxplain.imaging.digest.pixel_digest`, before letterboxing, as the serving
handler hashes it) for the checkpoint's ``train-digests.bin`` (:mod:`harness.train.digests`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from harness.data.dataset import ImageRecord, ReadOptions
from harness.data.layouts import open_dataset
from harness.data.split import load_or_create_split
from harness.train.provenance import DataProvenance, provenance_of
from ptxplain.imaging.digest import pixel_digest
from ptxplain.imaging.preprocess import letterbox, to_model_input

__all__ = ["ImageTensors", "TrainValRecords", "load_images", "model_batch", "read_train_val"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainValRecords:
    """The train and val records of a data folder and a fingerprint of data + split."""

    train: tuple[ImageRecord, ...]
    val: tuple[ImageRecord, ...]
    fingerprint: str
    counts: dict[str, dict[str, int]]
    provenance: DataProvenance


@dataclasses.dataclass(frozen=True)
class ImageTensors:
    """Letterboxed canvases (N, S, S) in [0, 1], content masks (N, S, S), labels (N,) and the
    decoded images' pixel digests (N,)."""

    canvases: torch.Tensor
    content: torch.Tensor
    labels: torch.Tensor
    image_ids: tuple[str, ...]
    digests: tuple[bytes, ...] = ()

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _fingerprint(data_fingerprint: str, assignment: dict[str, str]) -> str:
    digest = hashlib.sha256(data_fingerprint.encode())
    for image_id, split in sorted(assignment.items()):
        digest.update(f"{image_id}\t{split}\n".encode())
    return digest.hexdigest()


def read_train_val(root: Path, options: ReadOptions) -> TrainValRecords:
    """Open ``root``, load or make its split (beside the pseudonym key), keep train and val."""
    dataset = open_dataset(root, options)
    split = load_or_create_split(dataset, options.state_dir or root)
    counts = split.counts(dataset)
    log.info("data %s: %d images; split %s", root, len(dataset.records), counts)
    train = tuple(split.records(dataset, "train"))
    fingerprint = _fingerprint(split.fingerprint, split.assignment)
    return TrainValRecords(
        train=train,
        val=tuple(split.records(dataset, "val")),
        fingerprint=fingerprint,
        counts=counts,
        provenance=provenance_of(root, fingerprint, (r.image_id for r in train)),
    )


def _content_mask(size: int, top: int, left: int, height: int, width: int) -> torch.Tensor:
    mask = torch.zeros((size, size), dtype=torch.float32)
    mask[top : top + height, left : left + width] = 1.0
    return mask


def load_images(
    records: Sequence[ImageRecord], size: int, *, desc: str, progress: bool
) -> ImageTensors:
    """Read and letterbox every record once (a tqdm bar on stderr when ``progress``)."""
    from tqdm import tqdm

    canvases, content, digests = [], [], []
    for record in tqdm(records, desc=desc, file=sys.stderr, disable=not progress, leave=False):
        pixels = record.load_pixels()
        digests.append(pixel_digest(pixels))
        canvas, g = letterbox(pixels, size)
        canvases.append(canvas)
        content.append(
            _content_mask(size, g.pad_top, g.pad_left, g.content_height, g.content_width)
        )
    labels = np.array([int(r.label) for r in records], dtype=np.int64)
    return ImageTensors(
        canvases=torch.stack(canvases) if canvases else torch.zeros((0, size, size)),
        content=torch.stack(content) if content else torch.zeros((0, size, size)),
        labels=torch.from_numpy(labels),
        image_ids=tuple(r.image_id for r in records),
        digests=tuple(digests),
    )


def model_batch(
    canvases: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """(B, 3, S, S) model input, each canvas normalized exactly as the server does."""
    return torch.stack([to_model_input(canvas, mean, std) for canvas in canvases])
