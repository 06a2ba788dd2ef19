"""Registry-driven checks: every architecture builds, feeds and exposes its target layer."""

from __future__ import annotations

import pytest
import torch

from ptxplain.errors import UnknownArchitectureError
from ptxplain.models.registry import get_spec, list_specs, model_stats, target_layer, token_layout
from tests.explain.conftest import ARCH_NAMES, cached_engine, images_for

STUDY = {"vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101"} | {
    "vit_s16",
    "vit_b16",
    "vit_l16",
}


def test_registry_covers_the_study_and_extras() -> None:
    names = set(ARCH_NAMES)
    assert names >= STUDY
    assert {"densenet121", "efficientnet_b0", "vgg16_bn", "vgg19_bn"} <= names
    assert {s.name for s in list_specs() if s.in_study} == STUDY


def test_unknown_architecture_names_the_known_ones() -> None:
    with pytest.raises(UnknownArchitectureError, match="resnet18"):
        get_spec("resnet7")


@pytest.mark.parametrize("name", ARCH_NAMES)
def test_builds_with_two_logits_and_a_target_layer(name: str) -> None:
    engine = cached_engine(name)
    logits = engine.logits(images_for(engine))
    assert logits.shape == (2, 2)
    assert torch.isfinite(logits).all()
    assert target_layer(engine.model, engine.spec) is engine.layer


@pytest.mark.parametrize("name", ["vit_s16", "vit_b16", "vit_l16"])
def test_token_layout_is_read_from_the_model(name: str) -> None:
    spec = get_spec(name)
    for size, grid in ((64, (4, 4)), (96, (6, 6)), (224, (14, 14))):
        with torch.device("meta"):
            model = spec.build(size)
        layout = token_layout(model)
        assert layout.grid == grid
        assert layout.prefix_tokens == 1


def test_stats_count_parameters_and_flops() -> None:
    stats = model_stats(get_spec("resnet50"))
    assert 23_000_000 < stats["params"] < 24_000_000  # 2-class head
    assert 8.0e9 < stats["flops"] < 8.4e9  # 4.1 GMACs at 224 px, 2 FLOPs per MAC
    deeper = model_stats(get_spec("resnet101"))
    assert deeper["flops"] > stats["flops"]


def test_depths_follow_the_names() -> None:
    assert [get_spec(f"resnet{d}").depth for d in (18, 34, 50, 101)] == [18, 34, 50, 101]
    assert get_spec("vit_l16").depth > get_spec("vit_b16").depth
