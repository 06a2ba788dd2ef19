"""Where training's initial weights come from: a given file, the local caches, or nowhere.

Nothing is downloaded. For a registry architecture the file names that torchvision and timm
would cache are worked out locally (torchvision's weight enum URL, timm's ``pretrained_cfg``
of the built model) and looked up in the torch hub checkpoint folder and the Hugging Face hub
cache; the first file found is used, else training starts from scratch.

ImageNet files have a 1000-class head where the model has 2 outputs: the backbone is loaded
strictly and the head (the ``nn.Linear`` layers with as many outputs as the task has classes)
stays freshly initialised. Any other missing, unexpected or mis-shaped key is a
:class:`~ptxplain.errors.WeightsError` naming the file and the architecture.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptxplain.errors import WeightsError
from ptxplain.models.registry import ArchSpec
from ptxplain.models.weights import load_state_dict

__all__ = [
    "LocalWeightDirs",
    "WeightsInit",
    "find_local_weights",
    "initialise_weights",
    "load_backbone",
    "zero_init_residuals",
]

_LOADABLE = (".pth", ".pt", ".bin", ".safetensors")


@dataclasses.dataclass(frozen=True)
class LocalWeightDirs:
    """The folders searched for cached ImageNet weights (resolved once, see :meth:`default`)."""

    torch_hub: Path
    hf_hub: Path

    @classmethod
    def default(cls) -> LocalWeightDirs:
        """``$TORCH_HOME/hub/checkpoints`` and ``$HF_HUB_CACHE`` (or ``$HF_HOME/hub``)."""
        home = Path.home() / ".cache"
        torch_home = Path(os.environ.get("TORCH_HOME", home / "torch"))
        hf_home = Path(os.environ.get("HF_HOME", home / "huggingface"))
        hf_hub = Path(os.environ.get("HF_HUB_CACHE", hf_home / "hub"))
        return cls(torch_hub=torch_home / "hub" / "checkpoints", hf_hub=hf_hub)


@dataclasses.dataclass(frozen=True)
class WeightsInit:
    """How a model was initialised: ``source`` is "scratch" or "imagenet:<file>"."""

    source: str
    path: Path | None = None
    head_loaded: bool = False


def _torchvision_names(spec: ArchSpec) -> list[str]:
    import torchvision.models as tvm

    try:
        weights = tvm.get_model_weights(spec.name)
    except ValueError:
        return []
    return [member.url.rsplit("/", 1)[-1] for member in weights]


def _timm_candidates(model: nn.Module, dirs: LocalWeightDirs) -> list[Path]:
    cfg: dict[str, Any] = dict(getattr(model, "pretrained_cfg", None) or {})
    found: list[Path] = []
    if cfg.get("hf_hub_id"):
        repo = dirs.hf_hub / ("models--" + str(cfg["hf_hub_id"]).replace("/", "--"))
        for name in ("model.safetensors", "pytorch_model.bin"):
            found.extend(sorted(repo.glob(f"snapshots/*/{name}")))
    if cfg.get("url"):
        found.append(dirs.torch_hub / str(cfg["url"]).rsplit("/", 1)[-1])
    return found


def find_local_weights(spec: ArchSpec, model: nn.Module, dirs: LocalWeightDirs) -> Path | None:
    """The first cached ImageNet file for ``spec`` that exists locally, else ``None``."""
    candidates = [dirs.torch_hub / name for name in _torchvision_names(spec)]
    candidates += _timm_candidates(model, dirs)
    return next((p for p in candidates if p.suffix in _LOADABLE and p.is_file()), None)


def _head_keys(model: nn.Module, n_classes: int) -> set[str]:
    keys: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == n_classes:
            keys.update(f"{name}.{param}" for param, _ in module.named_parameters(recurse=False))
    return keys


def _adapt_timm(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's own filter for its model family (e.g. resample a ViT's position embedding)."""
    module = sys.modules.get(type(model).__module__)
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    if not type(model).__module__.startswith("timm.") or filter_fn is None:
        return state
    return dict(filter_fn(state, model))


def _problems(
    own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], head: set[str]
) -> list[str]:
    optional = {k for k in own if k.endswith("num_batches_tracked")} | head
    missing = [k for k in own if k not in state and k not in optional]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and k not in head and state[k].shape != own[k].shape
    ]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
        if keys:
            parts.append(f"{label} {len(keys)} (e.g. {keys[:3]})")
    return parts


def load_backbone(model: nn.Module, path: Path, spec: ArchSpec) -> bool:
    """Load ``path`` into ``model``, keeping a fresh head if the file's has another shape.

    Returns whether the head was loaded too.
    """
    state = load_state_dict(path, spec.name)
    try:
        state = _adapt_timm(model, state)
    except Exception as exc:
        raise WeightsError(
            f"weights file {path} does not fit architecture {spec.name!r}: {exc}", model=spec.name
        ) from exc
    own = model.state_dict()
    head = _head_keys(model, len(spec.classes))
    problems = _problems(own, state, head)
    if problems:
        raise WeightsError(
            f"weights file {path} does not fit architecture {spec.name!r}: " + "; ".join(problems),
            model=spec.name,
        )
    head_fits = all(k in state and state[k].shape == own[k].shape for k in head)
    keep = {k: v for k, v in state.items() if k not in head or head_fits}
    model.load_state_dict(keep, strict=False)
    return head_fits


def zero_init_residuals(model: nn.Module) -> int:
    """Zero the last BatchNorm scale of every torchvision residual block, so that each block
    starts as the identity (Goyal et al., 2017). Returns how many blocks changed (0 for models
    without such blocks)."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    changed = 0
    for module in model.modules():
        last = module.bn3 if isinstance(module, Bottleneck) else None
        last = module.bn2 if isinstance(module, BasicBlock) else last
        if isinstance(last, nn.BatchNorm2d):
            nn.init.zeros_(last.weight)
            changed += 1
    return changed


def initialise_weights(
    model: nn.Module,
    spec: ArchSpec,
    weights: Path | None,
    dirs: LocalWeightDirs | None,
    *,
    zero_init_residual: bool = False,
) -> WeightsInit:
    """Load ``weights`` if given, else a locally cached file (``dirs``), else keep random init
    (with :func:`zero_init_residuals` if asked: it only ever applies to a from-scratch start)."""
    path = weights
    if path is None and dirs is not None:
        path = find_local_weights(spec, model, dirs)
    if path is None:
        if zero_init_residual:
            zero_init_residuals(model)
        return WeightsInit(source="scratch")
    head_loaded = load_backbone(model, path, spec)
    return WeightsInit(source=f"imagenet:{path.name}", path=path, head_loaded=head_loaded)
