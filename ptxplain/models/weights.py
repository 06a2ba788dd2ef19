"""Weights come only from local files: safetensors or ``torch.load(..., weights_only=True)``.

Nothing is ever downloaded. A missing file, an unreadable file or a state dict that does not fit
the architecture is a :class:`~ptxplain.errors.WeightsError` naming the file and the architecture.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ptxplain.errors import WeightsError
from ptxplain.models.registry import ArchSpec

__all__ = ["build_with_weights", "load_state_dict", "load_weights", "save_weights"]


def save_weights(model: nn.Module, path: Path) -> Path:
    """Write the model's state dict (contiguous CPU tensors) as safetensors or .pt by suffix."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def load_state_dict(path: Path, arch: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"weights file {path} for architecture {arch!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"cannot read weights file {path} for architecture {arch!r}: {exc}"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} for {arch!r} holds no state dict")
    return state


def load_weights(model: nn.Module, path: Path, arch: str) -> nn.Module:
    """Load ``path`` into ``model`` strictly; a mismatch names the offending keys."""
    state = load_state_dict(path, arch)
    result = model.load_state_dict(state, strict=False)
    problems = _mismatch(model, state, result.missing_keys, result.unexpected_keys)
    if problems:
        raise WeightsError(
            f"weights file {path} does not fit architecture {arch!r}: {problems}", model=arch
        )
    return model


def _mismatch(
    model: nn.Module, state: dict[str, torch.Tensor], missing: list[str], unexpected: list[str]
) -> str:
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} keys (e.g. {missing[:3]})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[:3]})")
    return "; ".join(parts)


def build_with_weights(spec: ArchSpec, input_size: int, path: Path) -> nn.Module:
    """Build ``spec`` straight into the weights of ``path``, skipping the random init.

    The model is built on the meta device and the state dict is assigned in place; a model
    whose non-persistent buffers the state dict cannot fill is built the ordinary way instead.
    """
    state = load_state_dict(path, spec.name)
    with torch.device("meta"):
        model = spec.build(input_size)
    try:
        result = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:  # shapes that do not fit
        raise WeightsError(
            f"weights file {path} does not fit architecture {spec.name!r}: {exc}", model=spec.name
        ) from exc
    problems = _mismatch(model, state, result.missing_keys, result.unexpected_keys)
    if problems:
        raise WeightsError(
            f"weights file {path} does not fit architecture {spec.name!r}: {problems}",
            model=spec.name,
        )
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        return load_weights(spec.build(input_size), path, spec.name)
    return model.eval()
