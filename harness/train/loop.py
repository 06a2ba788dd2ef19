"""One epoch of training and one validation pass, on in-memory letterboxed images.

Every random choice of an epoch (batch order, augmentation, dropout) comes from torch seeded
with :func:`epoch_seed` at the epoch's start, so an epoch depends only on the seed, its number
and the model / optimizer / scheduler state it starts from.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.train.augment import AugmentConfig, augment_batch
from harness.train.data import ImageTensors, model_batch
from harness.train.distill import Teacher, distillation_loss
from harness.train.metrics import validation_auroc
from ptxplain.models.registry import ArchSpec

__all__ = [
    "EpochRunner",
    "Validation",
    "batch_indices",
    "epoch_seed",
    "steps_per_epoch",
    "warmup_cosine",
]

_EVAL_BATCH = 64


@dataclasses.dataclass(frozen=True)
class Validation:
    """Validation AUROC, class-weighted loss, and the positive-class probability per image."""

    auroc: float
    loss: float
    scores: np.ndarray = dataclasses.field(repr=False)
    labels: np.ndarray = dataclasses.field(repr=False)


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % (2**63 - 1)


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR factor per optimizer step: linear warm-up to 1, then cosine to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def batch_indices(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled partition of range(n); a last batch of one joins the one before (BatchNorm)."""
    chunks = list(torch.randperm(n, generator=generator).split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) < 2:
        chunks[-2] = torch.cat([chunks[-2], chunks.pop()])
    return chunks


def steps_per_epoch(n: int, batch_size: int) -> int:
    return len(batch_indices(n, batch_size, torch.Generator().manual_seed(0)))


@dataclasses.dataclass
class EpochRunner:
    """Trains ``model`` one epoch at a time and validates it."""

    model: nn.Module
    spec: ArchSpec
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: nn.Module
    batch_size: int
    augment: AugmentConfig
    device: torch.device
    bf16: bool = False  # bfloat16 autocast for training steps (validation stays float32)
    teacher: Teacher | None = None  # soft-label distillation (training loss only)
    clip_grad: float | None = None  # global gradient-norm clipping

    def _inputs(self, canvases: torch.Tensor) -> torch.Tensor:
        batch = model_batch(canvases, self.spec.mean, self.spec.std).to(self.device)
        return batch.contiguous(memory_format=torch.channels_last)

    def _step(self, canvases: torch.Tensor, y: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(self._inputs(canvases))
        loss = self.loss_fn(logits.float(), y.to(self.device))
        if self.teacher is not None:
            teacher = self.teacher.logits(canvases, self.device, self.bf16)
            loss = distillation_loss(
                loss, logits.float(), teacher, self.teacher.alpha, self.teacher.temperature
            )
        loss.backward()
        if self.clip_grad is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad)
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def train_epoch(self, images: ImageTensors, seed: int, bar: Any, note: str = "") -> float:
        """One pass over ``images``; returns the mean training loss. ``bar`` is a tqdm bar,
        its postfix shows the running loss and ``note``."""
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        self.model.train()
        total, seen = 0.0, 0
        for index in batch_indices(len(images), self.batch_size, generator):
            canvases = augment_batch(
                images.canvases[index], images.content[index], self.augment, generator
            )
            loss = self._step(canvases, images.labels[index])
            total, seen = total + loss * len(index), seen + len(index)
            bar.update(1)
            bar.set_postfix_str(f"loss {total / seen:.4f}{note}", refresh=False)
        return total / max(seen, 1)

    @torch.inference_mode()
    def validate(self, images: ImageTensors) -> Validation:
        self.model.eval()
        logits = torch.cat(
            [
                self.model(self._inputs(images.canvases[start : start + _EVAL_BATCH])).float()
                for start in range(0, len(images), _EVAL_BATCH)
            ]
        )
        loss = float(self.loss_fn(logits, images.labels.to(self.device)))
        logits = logits.cpu()
        scores = torch.softmax(logits.double(), dim=1)[:, self.spec.positive_class].numpy()
        labels = (images.labels.numpy() == self.spec.positive_class).astype(np.int64)
        return Validation(validation_auroc(labels, scores), loss, scores, labels)
