"""The resumable training state: one file, rewritten atomically after every epoch.

It holds everything the next epoch depends on (model, optimizer, scheduler, torch RNG, epoch,
early-stopping bookkeeping with the best weights so far, history) plus the settings key of the
run, so ``--resume`` refuses a state file written with other settings or other data.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from ptxplain.errors import ConfigError

__all__ = ["STATE_FILENAME", "TrainState", "load_state", "save_state"]

STATE_FILENAME = "train-state.pt"
_FORMAT = "ptxplain-train-state/1"


@dataclasses.dataclass
class TrainState:
    """Mutable bookkeeping of a run; ``epoch`` counts finished epochs."""

    settings_key: str
    epoch: int = 0
    best_epoch: int = 0
    best_auroc: float = float("-inf")
    best_loss: float = float("inf")
    epochs_since_best: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
    best_weights: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)

    def improved(self, auroc: float, loss: float) -> bool:
        """Higher validation AUROC wins; equal AUROC falls back to lower validation loss."""
        return auroc > self.best_auroc or (auroc == self.best_auroc and loss < self.best_loss)


def _plain(state: TrainState) -> dict[str, Any]:
    """The bookkeeping as plain data; best weights equal to the model's are not stored twice."""
    plain = {f.name: getattr(state, f.name) for f in dataclasses.fields(TrainState)}
    if state.best_epoch == state.epoch:
        plain["best_weights"] = None
    return plain


def save_state(
    path: Path,
    state: TrainState,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    """Write the state (via a temporary file and an atomic rename)."""
    body = {
        "format": _FORMAT,
        "train": _plain(state),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
    }
    temporary = path.with_name(path.name + ".tmp")
    torch.save(body, temporary)
    os.replace(temporary, path)


def load_state(
    path: Path,
    settings_key: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> TrainState:
    """Restore model, optimizer, scheduler and RNG from ``path``; return the bookkeeping."""
    try:
        body = torch.load(path, map_location="cpu", weights_only=True)
        if body.get("format") != _FORMAT:
            raise ValueError(f"format {body.get('format')!r}, expected {_FORMAT!r}")
        state = TrainState(**body["train"])
        if state.best_weights is None:  # the best epoch is the last one: the model itself
            state.best_weights = {k: v.clone() for k, v in body["model"].items()}
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: unreadable training state ({exc}); delete it") from exc
    if state.settings_key != settings_key:
        raise ConfigError(
            f"{path}: written by a run with other settings or data; resume with the same "
            "options, or delete it (or use --overwrite) to start over"
        )
    model.load_state_dict(body["model"])
    optimizer.load_state_dict(body["optimizer"])
    scheduler.load_state_dict(body["scheduler"])
    torch.set_rng_state(body["rng"])
    return state
