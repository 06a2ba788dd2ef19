"""Map similarity (Spearman, SSIM), perturbations with the shift undone, agreement between
models, and the model-randomization sanity check on a real (small, random-init) engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.metrics.robustness import (
    EngineExplainer,
    Perturbation,
    agreement_matrix,
    layers_from_target,
    map_spearman,
    randomization_check,
    randomize_top_layers,
    ssim,
    stability,
)
from ptxplain.explain.engine import ExplanationEngine
from ptxplain.models.registry import get_spec


def _blob(size: int = 32, row: int = 10, col: int = 20) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / 30.0)


def test_ssim_properties() -> None:
    a = _blob()
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(np.zeros((8, 8)), np.zeros((8, 8))) == pytest.approx(1.0)
    b = _blob(row=20, col=8)
    assert ssim(a, b) == pytest.approx(ssim(b, a))
    assert ssim(a, b) < 0.5 < ssim(a, np.clip(a + 0.01, 0, 1))


def test_ssim_of_a_constant_offset_is_the_luminance_term() -> None:
    # Equal structure, means differing by d everywhere: SSIM = (2 mu (mu + d) + c1) / (mu^2 + (mu + d)^2 + c1).
    a = np.full((16, 16), 0.4)
    c1 = 0.01**2
    expected = (2 * 0.4 * 0.6 + c1) / (0.4**2 + 0.6**2 + c1)
    assert ssim(a, a + 0.2) == pytest.approx(expected)


def test_map_spearman() -> None:
    a = _blob()
    assert map_spearman(a, a**3) == pytest.approx(1.0)
    assert map_spearman(a, -a) == pytest.approx(-1.0)
    assert np.isnan(map_spearman(a, np.ones_like(a)))


def test_shift_is_undone_before_comparing() -> None:
    image = _blob(64, 30, 25).astype(np.float32)
    shift = Perturbation("shift", shift=(4, -3))
    moved = shift.apply(image)
    assert not np.allclose(moved, image)
    ref, back = shift.align(image, moved)
    assert ref.shape == back.shape == (60, 61)
    assert np.allclose(ref, back)


def test_stability_of_an_explainer_that_follows_the_image() -> None:
    def explain(pixels: np.ndarray) -> dict[str, np.ndarray]:
        return {"follow": pixels.copy(), "fixed": _blob(64, 10, 10)}

    image = _blob(64, 30, 25).astype(np.float32)
    perturbations = (Perturbation("shift", shift=(4, 4)), Perturbation("noise", noise_sigma=0.05))
    result = stability(explain, [image, image * 0.9], perturbations)
    assert result["follow"]["shift"]["n"] == 2
    assert result["follow"]["shift"]["spearman_mean"] == pytest.approx(1.0)
    assert result["follow"]["noise"]["spearman_mean"] < 0.999
    assert result["fixed"]["noise"]["ssim_mean"] == pytest.approx(1.0)


def test_agreement_matrix() -> None:
    a, b = _blob(), _blob(row=25, col=5)
    maps = [{"x": a, "y": a**2, "z": b}, {"x": b, "y": b**2}]
    result = agreement_matrix(maps, ["x", "y", "z"])
    assert result["matrix"][0][1] == pytest.approx(1.0)
    assert result["n"][0][1] == 2 and result["n"][0][2] == 1
    assert result["matrix"][0][2] < 0.5


def test_randomize_top_layers_touches_only_the_output_end() -> None:
    first, last = torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)
    model = torch.nn.Sequential(first, torch.nn.ReLU(), last)
    clone = randomize_top_layers(model, 1, seed=3)
    assert torch.equal(clone.get_parameter("0.weight"), first.weight)
    assert not torch.equal(clone.get_parameter("2.weight"), last.weight)


def test_randomization_check_verdicts() -> None:
    images = [np.zeros((8, 8), np.float32), np.ones((8, 8), np.float32)]
    rng = np.random.default_rng(0)

    def steady(pixels: np.ndarray) -> dict[str, np.ndarray]:
        return {"m": _blob(32, 10, 20)}

    def scrambled(pixels: np.ndarray) -> dict[str, np.ndarray]:
        return {"m": rng.random((32, 32))}

    def flat(pixels: np.ndarray) -> dict[str, np.ndarray]:
        return {"m": np.zeros((32, 32))}

    assert not randomization_check(steady, steady, images)["m"]["passes"]
    differs = randomization_check(steady, scrambled, images)["m"]
    assert differs["passes"] and abs(differs["spearman_mean"]) < 0.3
    undefined = randomization_check(steady, flat, images)["m"]
    assert undefined["spearman_mean"] is None and not undefined["passes"]


def test_randomized_engine_maps_differ_from_the_original() -> None:
    torch.manual_seed(0)
    spec = get_spec("resnet18")
    model = spec.build(128)
    top = layers_from_target(model, spec.target_layer)
    assert top == 11  # layer4: 2 blocks x (2 conv + 2 bn) + the downsample's conv and bn; fc
    original = EngineExplainer(ExplanationEngine(model, spec), "resnet18", 128)
    randomized = EngineExplainer(
        ExplanationEngine(randomize_top_layers(model, top, seed=1), spec), "resnet18", 128
    )
    images = [np.random.default_rng(i).random((96, 128)).astype(np.float32) for i in range(2)]
    same = randomization_check(original, original, images)["resnet18"]
    assert same["spearman_mean"] == pytest.approx(1.0) and not same["passes"]
    before, after = original(images[0])["resnet18"], randomized(images[0])["resnet18"]
    assert before.shape == after.shape == (96, 128)
    assert not np.allclose(before, after)
    name = "layer3.1.conv2.weight"  # below the target layer: untouched
    assert torch.equal(randomized.engine.model.get_parameter(name), model.get_parameter(name))
