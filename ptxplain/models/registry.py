"""The architecture registry: one typed spec per architecture.

Adding an architecture is one :func:`register` call. Every spec says how to build the model for
the binary pneumothorax task (random init; weights only ever come from local files, see
:mod:`ptxplain.models.weights`), its default input size and normalization, and the Grad-CAM target
layer as a dotted module path resolved with ``nn.Module.get_submodule``. For token models
(ViTs) the layout of the target layer's output (prefix tokens, patch grid) is read from the
built model, never hard-coded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ptxplain.errors import UnknownArchitectureError

__all__ = [
    "CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "POSITIVE_CLASS",
    "ArchSpec",
    "TokenLayout",
    "get_spec",
    "list_specs",
    "model_stats",
    "register",
    "target_layer",
    "token_layout",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASSES = ("no_pneumothorax", "pneumothorax")
POSITIVE_CLASS = 1

Builder = Callable[[int, int], nn.Module]


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """How to build, feed and explain one architecture."""

    name: str
    family: str
    builder: Builder = dataclasses.field(repr=False)
    target_layer: str
    depth: int
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    classes: tuple[str, ...] = CLASSES
    positive_class: int = POSITIVE_CLASS
    tokens: bool = False
    in_study: bool = False
    description: str = ""

    def build(self, input_size: int | None = None) -> nn.Module:
        """A random-init model in eval mode for ``input_size`` (default: the spec's)."""
        model = self.builder(len(self.classes), input_size or self.input_size)
        return model.eval()


@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """Layout of a token model's (B, N, C) activations: prefix tokens then a patch grid."""

    prefix_tokens: int
    grid: tuple[int, int]


_REGISTRY: dict[str, ArchSpec] = {}


def register(spec: ArchSpec) -> ArchSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"architecture {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ArchSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownArchitectureError(f"unknown architecture {name!r}; known: {known}") from None


def list_specs() -> list[ArchSpec]:
    return list(_REGISTRY.values())


def target_layer(model: nn.Module, spec: ArchSpec) -> nn.Module:
    return model.get_submodule(spec.target_layer)


def token_layout(model: nn.Module) -> TokenLayout:
    """Read prefix-token count and patch grid from a timm Vision Transformer."""
    vit: Any = model
    prefix = int(vit.num_prefix_tokens)
    grid = tuple(int(g) for g in vit.patch_embed.grid_size)
    return TokenLayout(prefix_tokens=prefix, grid=(grid[0], grid[1]))


def model_stats(spec: ArchSpec, input_size: int | None = None) -> dict[str, int]:
    """Parameter count and forward FLOPs at ``input_size``, measured on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    size = input_size or spec.input_size
    with torch.device("meta"):
        model = spec.build(size)
        params = sum(p.numel() for p in model.parameters())
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.empty(1, 3, size, size))
    return {"params": int(params), "flops": int(counter.get_total_flops())}


# -- builders ---------------------------------------------------------------------------------


def _torchvision(fn_name: str, **extra: Any) -> Builder:
    def build(num_classes: int, input_size: int) -> nn.Module:
        import torchvision.models as tvm

        fn = getattr(tvm, fn_name)
        return fn(weights=None, num_classes=num_classes, **extra)

    return build


def _timm(model_name: str) -> Builder:
    def build(num_classes: int, input_size: int) -> nn.Module:
        import timm

        return timm.create_model(
            model_name, pretrained=False, num_classes=num_classes, img_size=input_size
        )

    return build


def _resnet(depth: int) -> ArchSpec:
    return ArchSpec(
        name=f"resnet{depth}",
        family="resnet",
        builder=_torchvision(f"resnet{depth}"),
        target_layer="layer4",
        depth=depth,
        in_study=True,
        description=f"ResNet-{depth} (torchvision); CAM on the last residual stage",
    )


def _vgg(depth: int, bn: bool, last_pool: int) -> ArchSpec:
    suffix = "_bn" if bn else ""
    return ArchSpec(
        name=f"vgg{depth}{suffix}",
        family="vgg",
        builder=_torchvision(f"vgg{depth}{suffix}"),
        target_layer=f"features.{last_pool}",
        depth=depth,
        in_study=not bn,
        description=f"VGG-{depth}{' with batch norm' if bn else ''} (torchvision); "
        "CAM on the last max-pool of the features",
    )


def _vit(size: str, timm_name: str, blocks: int) -> ArchSpec:
    return ArchSpec(
        name=f"vit_{size}16",
        family="vit",
        builder=_timm(timm_name),
        target_layer=f"blocks.{blocks - 1}.norm1",
        depth=blocks,
        tokens=True,
        in_study=True,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        description=f"ViT-{size.upper()}/16 (timm {timm_name}); CAM on the last block's norm1, "
        "patch tokens reshaped to the grid read from the model",
    )


for _depth in (18, 34, 50, 101):
    register(_resnet(_depth))
register(_vgg(16, bn=False, last_pool=30))
register(_vgg(19, bn=False, last_pool=36))
register(_vgg(16, bn=True, last_pool=43))
register(_vgg(19, bn=True, last_pool=52))
register(_vit("s", "vit_small_patch16_224", 12))
register(_vit("b", "vit_base_patch16_224", 12))
register(_vit("l", "vit_large_patch16_224", 24))
register(
    ArchSpec(
        name="densenet121",
        family="densenet",
        builder=_torchvision("densenet121"),
        target_layer="features.denseblock4",
        depth=121,
        description="DenseNet-121 (torchvision); CAM on the last dense block (before norm5, "
        "whose output the classifier's in-place ReLU overwrites)",
    )
)
register(
    ArchSpec(
        name="efficientnet_b0",
        family="efficientnet",
        builder=_torchvision("efficientnet_b0"),
        target_layer="features.8",
        depth=82,
        description="EfficientNet-B0 (torchvision); CAM on the final 1x1 conv stage",
    )
)
