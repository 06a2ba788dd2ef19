"""The settings of one training run, resolved once (by the CLI or a profile) and passed down.

:func:`resolve_device` and :func:`resolve_precision` turn ``auto`` into what this machine
offers; :func:`settings_key` fingerprints everything that decides the result, so a resumed
run can prove it continues the same run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from harness.data.dataset import ReadOptions
from harness.train.augment import AugmentConfig
from harness.train.distill import teacher_identity
from harness.train.pretrained import LocalWeightDirs
from ptxplain.errors import ConfigError, InvalidOptionError
from ptxplain.models.meta import META_FILENAME
from ptxplain.models.registry import ArchSpec, get_spec

__all__ = [
    "OPTIMIZERS",
    "PRECISIONS",
    "WEIGHTS_FILENAME",
    "TrainConfig",
    "is_finished",
    "resolve_device",
    "resolve_precision",
    "settings_key",
]

WEIGHTS_FILENAME = "weights.safetensors"
OPTIMIZERS = ("adamw", "sgd")
PRECISIONS = ("fp32", "bf16")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on (resolved once by the CLI or a profile)."""

    arch: str
    data: Path
    out: Path
    input_size: int | None = None  # None: the spec's default
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    warmup_epochs: int = 1
    seed: int = 0
    weights: Path | None = None  # an ImageNet (or other) file to start from
    weight_dirs: LocalWeightDirs | None = None  # caches searched when weights is None
    zero_init_residual: bool = False  # from scratch: residual blocks start as the identity
    threads: int | None = None  # None: leave torch's setting alone
    device: str = "cpu"  # "cpu" or "cuda[:N]" (see resolve_device)
    precision: str = "fp32"  # training steps in "fp32" or "bf16" autocast (see resolve_precision)
    patience: int = 5
    resume: bool = False
    overwrite: bool = False  # discard whatever OUT holds
    force: bool = False  # retrain a finished model that is not this run (else: an error)
    stop_after: int | None = None  # leave the run resumable after this many epochs in total
    state_every_s: float = 0.0  # write train-state.pt when this long has passed (0: every epoch)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    read: ReadOptions = dataclasses.field(default_factory=ReadOptions)
    progress: bool = True
    profile: str = ""  # the profile this run belongs to ("" for a single --arch run)
    # Soft-label distillation from a trained checkpoint folder on the same data (see distill.py).
    teacher: Path | None = None
    distill_alpha: float = 0.5
    distill_temperature: float = 2.0
    clip_grad: float | None = None  # clip the gradients' global L2 norm to this (None: off)

    def __post_init__(self) -> None:
        checks = {
            "--epochs": self.epochs >= 1,
            "--batch-size": self.batch_size >= 2,
            "--lr": self.lr > 0,
            "--weight-decay": self.weight_decay >= 0,
            "--patience": self.patience >= 1,
            "--warmup-epochs": self.warmup_epochs >= 0,
            "--threads": self.threads is None or self.threads >= 1,
            "--input-size": self.input_size is None or self.input_size >= 16,
            "--stop-after-epochs": self.stop_after is None or self.stop_after >= 1,
            "--state-every": self.state_every_s >= 0,
            "--distill-alpha": 0.0 < self.distill_alpha <= 1.0,
            "--distill-temperature": self.distill_temperature > 0,
            "--clip-grad": self.clip_grad is None or self.clip_grad > 0,
        }
        for flag, ok in checks.items():
            if not ok:
                raise InvalidOptionError(f"{flag}: invalid value in {self.describe()}")
        if self.optimizer not in OPTIMIZERS:
            raise InvalidOptionError(f"--optimizer {self.optimizer!r}: choose {OPTIMIZERS}")
        if self.precision not in PRECISIONS:
            raise InvalidOptionError(f"--precision {self.precision!r}: choose {PRECISIONS}")
        get_spec(self.arch)

    @property
    def finished(self) -> bool:
        """Whether ``out`` already holds a trained model (weights and metadata)."""
        return is_finished(self.out)

    @property
    def spec(self) -> ArchSpec:
        return get_spec(self.arch)

    @property
    def size(self) -> int:
        return self.input_size or self.spec.input_size

    def describe(self) -> str:
        return (
            f"{self.arch} size {self.input_size} epochs {self.epochs} batch {self.batch_size} "
            f"lr {self.lr} wd {self.weight_decay} patience {self.patience} seed {self.seed}"
        )

    def hyperparameters(self) -> dict[str, object]:
        """What decides the result (the settings key hashes these and the data fingerprint)."""
        keys = ("arch", "epochs", "batch_size", "lr", "weight_decay", "optimizer")
        values: dict[str, object] = {k: getattr(self, k) for k in keys}
        values.update(
            input_size=self.size,
            warmup_epochs=self.warmup_epochs,
            seed=self.seed,
            patience=self.patience,
            precision=self.precision,
            zero_init_residual=self.zero_init_residual,
            augment=dataclasses.asdict(self.augment),
        )
        if self.clip_grad is not None:
            values["clip_grad"] = self.clip_grad
        if self.teacher is not None:
            values["distill"] = {
                "teacher": teacher_identity(self.teacher),
                "alpha": self.distill_alpha,
                "temperature": self.distill_temperature,
            }
        return values


def settings_key(config: TrainConfig, fingerprint: str) -> str:
    body = json.dumps(config.hyperparameters(), sort_keys=True, default=str) + fingerprint
    return hashlib.sha256(body.encode()).hexdigest()


def is_finished(out: Path) -> bool:
    return (out / META_FILENAME).is_file() and (out / WEIGHTS_FILENAME).is_file()


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; a missing GPU is an error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is visible to torch")
    if name != "cpu" and not name.startswith("cuda"):
        raise InvalidOptionError(f"--device {name!r}: choose auto, cpu or cuda[:N]")
    return name


def _cpu_has_bf16() -> bool:
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((probe and probe()) or (amx and amx()))


def resolve_precision(name: str, device: str) -> str:
    """``auto`` -> ``bf16`` where the hardware computes bfloat16 natively, else ``fp32``."""
    if name != "auto":
        return name
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if _cpu_has_bf16() else "fp32"
