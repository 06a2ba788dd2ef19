"""Fixtures for handler tests: small random-init models for every registry architecture."""

from __future__ import annotations

import functools

import pytest
import torch

from ptxplain.explain.engine import ExplanationEngine
from ptxplain.models.registry import ArchSpec, get_spec, list_specs

ARCH_NAMES = [spec.name for spec in list_specs()]


def input_size_for(spec: ArchSpec) -> int:
    """Small inputs keep the suite fast, yet give CNNs a 4x4 grid (ViTs: 4x4 patches at 64 px):
    on a 2x2 grid a random-init model's Grad-CAM is too often all-negative, hence all zero."""
    return 64 if spec.tokens else 128


@functools.cache
def cached_engine(name: str) -> ExplanationEngine:
    spec = get_spec(name)
    torch.manual_seed(0)
    return ExplanationEngine(spec.build(input_size_for(spec)), spec)


@pytest.fixture(params=ARCH_NAMES)
def engine(request: pytest.FixtureRequest) -> ExplanationEngine:
    return cached_engine(request.param)


def images_for(engine: ExplanationEngine, batch: int = 2, seed: int = 1) -> torch.Tensor:
    size = input_size_for(engine.spec)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=generator)
