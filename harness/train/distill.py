"""Soft-label knowledge distillation from an already trained checkpoint (as DeiT does).

A student trained with a teacher minimises, per mini-batch,

    (1 - alpha) * CE_w(student, labels) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T))

where ``CE_w`` is the run's class-weighted cross-entropy, ``s`` and ``t`` the student's and the
teacher's logits on the *same augmented batch* (the teacher sees it with its own normalization),
``T`` the temperature and ``alpha`` the weight of the teacher. The ``T^2`` factor keeps the soft
term's gradients on the scale of the hard one (Hinton et al., 2015). The teacher is frozen in eval
mode; validation, early stopping and the threshold use the plain labels only.

The teacher must have been trained on the same data and split (its data fingerprint is checked)
and at the same input size, so it never saw a validation or test image. What it is, and its own
settings key, go into the student's recipe: a retrained teacher makes a different student run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from harness.train.data import model_batch
from ptxplain.errors import ConfigError
from ptxplain.models.meta import META_FILENAME, ModelMeta
from ptxplain.models.registry import ArchSpec, get_spec
from ptxplain.models.weights import build_with_weights

__all__ = ["Teacher", "distillation_loss", "load_teacher", "teacher_identity"]

WEIGHTS_FILENAME = "weights.safetensors"


@dataclasses.dataclass
class Teacher:
    """A frozen trained model and how to feed it letterboxed canvases."""

    model: nn.Module
    spec: ArchSpec
    alpha: float
    temperature: float

    @torch.no_grad()
    def logits(self, canvases: torch.Tensor, device: torch.device, bf16: bool) -> torch.Tensor:
        batch = model_batch(canvases, self.spec.mean, self.spec.std).to(device)
        batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return self.model(batch).float()


def distillation_loss(
    hard: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor, alpha: float, t: float
) -> torch.Tensor:
    """``(1 - alpha) * hard + alpha * t^2 * KL(teacher_t || student_t)`` (batch mean)."""
    soft = F.kl_div(
        F.log_softmax(student / t, dim=1),
        F.log_softmax(teacher / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1.0 - alpha) * hard + alpha * (t * t) * soft


def _teacher_meta(folder: Path) -> ModelMeta:
    path = folder / META_FILENAME
    if not path.is_file() or not (folder / WEIGHTS_FILENAME).is_file():
        raise ConfigError(
            f"--teacher {folder}: no trained model there ({META_FILENAME} and "
            f"{WEIGHTS_FILENAME}); train the teacher first"
        )
    meta = ModelMeta.read(path)
    if not meta.trained:
        raise ConfigError(f"--teacher {folder}: holds untrained (random-init) weights")
    return meta


def teacher_identity(folder: Path) -> dict[str, object]:
    """What the student's recipe records of its teacher (and so its settings key hashes):
    the architecture and the teacher's own settings key, or ``pending`` before it exists."""
    try:
        meta = _teacher_meta(folder)
    except ConfigError:
        return {"folder": folder.name, "settings_key": "pending"}
    return {
        "folder": folder.name,
        "arch": meta.architecture,
        "settings_key": str(meta.recipe.get("settings_key", "")),
        "val_auroc": meta.metrics.get("val_auroc"),
    }


def load_teacher(
    folder: Path,
    fingerprint: str,
    size: int,
    *,
    alpha: float,
    temperature: float,
    device: torch.device,
) -> Teacher:
    """The frozen teacher in ``folder``; it must share the data + split and the input size."""
    meta = _teacher_meta(folder)
    if meta.data_fingerprint != fingerprint:
        raise ConfigError(
            f"--teacher {folder}: trained on {meta.trained_on} (data fingerprint "
            f"{meta.data_fingerprint[:12] or 'none'}), not on this data and split "
            f"({fingerprint[:12]}); a teacher must not have seen the student's val or test images"
        )
    if meta.input_size != size:
        raise ConfigError(
            f"--teacher {folder}: input size {meta.input_size}, the student's is {size}"
        )
    spec = get_spec(meta.architecture)
    model = build_with_weights(spec, size, folder / WEIGHTS_FILENAME)
    model.eval().requires_grad_(False)
    model = model.to(device).to(memory_format=torch.channels_last)
    return Teacher(model, spec, alpha, temperature)
