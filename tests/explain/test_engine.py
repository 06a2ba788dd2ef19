"""The explanation engine against stock grad-cam, over the whole registry."""

from __future__ import annotations

import copy
import functools
import gc

import numpy as np
import psutil
import pytest
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from ptxplain.errors import InvalidOptionError
from ptxplain.explain.engine import ExplanationEngine
from ptxplain.explain.maps import scaled_map
from ptxplain.explain.methods import METHODS
from ptxplain.models.registry import get_spec
from tests.explain.conftest import cached_engine, images_for, input_size_for


def stock_maps(engine: ExplanationEngine, images: torch.Tensor, method: str, classes: list[int]):
    """What pytorch-grad-cam itself returns (full backward, its own hooks)."""
    layout = engine.layout

    def reshape(acts: torch.Tensor) -> torch.Tensor:
        assert layout is not None
        grid = acts[:, layout.prefix_tokens :, :]
        return grid.reshape(acts.shape[0], *layout.grid, acts.shape[2]).permute(0, 3, 1, 2)

    model = engine.model.requires_grad_(True)
    try:
        cam_class = METHODS[method].cam_class
        with cam_class(model, [engine.layer], reshape_transform=reshape if layout else None) as c:
            return c(images, [ClassifierOutputTarget(k) for k in classes])
    finally:
        model.requires_grad_(False)
        model.zero_grad(set_to_none=True)


def ours_at_input_size(engine: ExplanationEngine, images, method: str, targets) -> np.ndarray:
    explanation = engine.explain(images, targets, [method])
    size = (images.shape[-2], images.shape[-1])
    return np.stack([scaled_map(cam, size, True) for cam in explanation.cams[method]])


def assert_informative(maps: np.ndarray) -> None:
    """Parity of constant (all-zero) maps would prove nothing: most maps must vary."""
    varying = int((maps.std(axis=(1, 2)) > 1e-3).sum())
    assert varying * 2 >= len(maps), f"only {varying} of {len(maps)} maps vary"


def test_gradcam_matches_stock_for_every_architecture(engine: ExplanationEngine) -> None:
    images = images_for(engine, batch=4)
    ours = ours_at_input_size(engine, images, "gradcam", ["positive", 0, "positive", 0])
    stock = stock_maps(engine, images, "gradcam", [1, 0, 1, 0])
    assert ours.shape == stock.shape == (4, *images.shape[-2:])
    assert np.isfinite(ours).all()
    assert_informative(ours)
    np.testing.assert_allclose(ours, stock, atol=1e-4)


@functools.cache
def engine_in_float64(name: str) -> ExplanationEngine:
    """The same weights as :func:`cached_engine`'s, in float64."""
    engine = cached_engine(name)
    return ExplanationEngine(copy.deepcopy(engine.model).double(), engine.spec)


def _stock_for(engine: ExplanationEngine, images: torch.Tensor, method: str) -> np.ndarray:
    predicted = engine.logits(images).argmax(dim=1).tolist()
    return np.asarray(stock_maps(engine, images, method, [predicted[0], 1]))


def _assert_same_map(
    engine: ExplanationEngine,
    images: torch.Tensor,
    method: str,
    ours: np.ndarray,
    stock: np.ndarray,
    atol: np.ndarray,
) -> None:
    """Each image's map equals stock's within its ``atol``; for the eigen methods, stock's map
    or stock's map of the opposite sign (grad-cam's projection sign is its LAPACK's; ours is
    fixed, see ptxplain.explain.methods)."""
    worst = np.abs(ours - stock).max(axis=(1, 2))
    if method.startswith("eigen") and (worst > atol).any():
        predicted = engine.logits(images).argmax(dim=1).tolist()
        classes = [predicted[0], 1]
        flipped = _with_flipped_projection(lambda: stock_maps(engine, images, method, classes))
        worst = np.minimum(worst, np.abs(ours - flipped).max(axis=(1, 2)))
    for i in range(len(ours)):
        assert worst[i] <= atol[i], f"image {i}: {worst[i]:.3g} from stock (bound {atol[i]:.3g})"


@pytest.mark.parametrize("name", ["resnet18", "vit_s16", "densenet121"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_matches_stock(name: str, method: str) -> None:
    """Two checks. In float64 the maths is compared, with float32's rounding out of the way:
    equal within 1e-5. In float32, what the engine serves: equal within 1e-4 plus twice how
    far stock's own float32 map is from its float64 one (a map whose maths amplifies rounding,
    such as XGradCAM's division by a dead channel's near-zero sum, is only that exact in
    float32; 1.04e-4 apart on a densenet121 here, where stock's float32 map is 1.35e-3 from
    its float64 one)."""
    engine, exact = cached_engine(name), engine_in_float64(name)
    images = images_for(engine, seed=3)
    ours64 = ours_at_input_size(exact, images.double(), method, ["predicted", "positive"])
    stock64 = _stock_for(exact, images.double(), method)
    _assert_same_map(exact, images.double(), method, ours64, stock64, np.full(len(images), 1e-5))

    ours = ours_at_input_size(engine, images, method, ["predicted", "positive"])
    stock = _stock_for(engine, images, method)
    assert_informative(ours)
    # stock's float32 map against a float64 one of the same sign: stock's own, or ours (equal
    # to stock's or to its flip, checked above), as an eigen projection may flip between dtypes.
    rounding = np.minimum(
        np.abs(stock - stock64).max(axis=(1, 2)), np.abs(stock - ours64).max(axis=(1, 2))
    )
    _assert_same_map(engine, images, method, ours, stock, 1e-4 + 2 * rounding)


def _with_flipped_projection(run):
    """Run stock grad-cam with its 2-D projection negated (the other singular-vector sign)."""
    import pytorch_grad_cam.eigen_cam as eigen_cam
    import pytorch_grad_cam.eigen_grad_cam as eigen_grad_cam

    original = eigen_cam.get_2d_projection
    try:
        for module in (eigen_cam, eigen_grad_cam):
            module.get_2d_projection = lambda x: -original(x)  # type: ignore[assignment]
        return run()
    finally:
        for module in (eigen_cam, eigen_grad_cam):
            module.get_2d_projection = original  # type: ignore[assignment]


def test_logits_equal_a_plain_forward_and_probabilities_sum_to_one() -> None:
    engine = cached_engine("resnet18")
    images = images_for(engine)
    explanation = engine.explain(images, ["positive", "predicted"], ["gradcam", "layercam"])
    torch.testing.assert_close(explanation.logits, engine.logits(images), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(explanation.probabilities.sum(dim=1), torch.ones(2))
    assert set(explanation.cams) == {"gradcam", "layercam"}
    assert explanation.cams["gradcam"].shape == (2, 4, 4)  # layer4 grid at 128 px


def test_logits_only_computes_no_map() -> None:
    engine = cached_engine("resnet18")
    explanation = engine.explain(images_for(engine), methods=())
    assert explanation.cams == {} and explanation.targets == []


def test_targets_are_per_image() -> None:
    engine = cached_engine("resnet18")
    images = images_for(engine)
    both = engine.explain(images, [0, 1], ["gradcam"]).cams["gradcam"]
    first = engine.explain(images[:1], [0], ["gradcam"]).cams["gradcam"]
    second = engine.explain(images[1:], [1], ["gradcam"]).cams["gradcam"]
    np.testing.assert_allclose(both, np.concatenate([first, second]), rtol=1e-4, atol=1e-6)
    assert not np.allclose(both[0], engine.explain(images[:1], [1], ["gradcam"]).cams["gradcam"][0])


def test_raw_magnitude_is_kept() -> None:
    engine = cached_engine("resnet18")
    images = images_for(engine)
    cams = engine.explain(images, [1, 1], ["gradcam"]).cams["gradcam"]
    # Raw maps differ in scale between images; normalized ones all peak at 1.
    assert not np.isclose(cams[0].max(), cams[1].max())
    assert all(np.isclose(scaled_map(c, None, True).max(), 1.0, atol=1e-5) for c in cams)


@pytest.mark.parametrize("bad", [2, -1, "worst"])
def test_bad_target_is_an_invalid_option(bad) -> None:
    engine = cached_engine("resnet18")
    with pytest.raises(InvalidOptionError, match="target"):
        engine.explain(images_for(engine, batch=1), [bad], ["gradcam"])


def test_unknown_method_is_an_invalid_option() -> None:
    engine = cached_engine("resnet18")
    with pytest.raises(InvalidOptionError, match="scorecam"):
        engine.explain(images_for(engine, batch=1), ["positive"], ["scorecam"])


def test_no_parameter_gradient_is_computed() -> None:
    spec = get_spec("resnet50")
    engine = ExplanationEngine(spec.build(128), spec)
    engine.explain(images_for(engine), ["positive", "positive"], ["gradcam"])
    assert all(p.grad is None and not p.requires_grad for p in engine.model.parameters())


def test_hundred_calls_leave_no_hooks_and_no_memory_growth() -> None:
    engine = cached_engine("resnet18")
    images = images_for(engine)
    process = psutil.Process()

    def run(n: int) -> None:
        for _ in range(n):
            engine.explain(images, ["positive", "predicted"], ["gradcam", "gradcam++"])
        gc.collect()

    run(10)
    before = process.memory_info().rss
    run(100)
    grown = process.memory_info().rss - before
    assert len(engine.layer._forward_hooks) == 0
    assert all(len(m._forward_hooks) == 0 for m in engine.model.modules())
    assert grown < 20 * 1024 * 1024, f"RSS grew by {grown / 2**20:.1f} MiB over 100 calls"


def test_test_sizes_are_small() -> None:
    assert input_size_for(cached_engine("vgg16").spec) <= 128


@pytest.mark.parametrize("name", ["resnet18", "vgg16_bn", "vit_s16", "densenet121"])
def test_bfloat16_autocast_stays_within_its_parity_bound(name: str) -> None:
    """Probabilities within 0.01 and every map correlated >= 0.95 with the float32 engine's
    (measured on these random-init models: <= 0.002 and >= 0.973)."""
    engine = cached_engine(name)
    images = images_for(engine, batch=4)
    reference = engine.explain(images, None, ["gradcam", "layercam"])
    low = ExplanationEngine(engine.model, engine.spec, autocast="bfloat16")
    assert low.autocast == "bfloat16"
    result = low.explain(images, None, ["gradcam", "layercam"])
    assert result.logits.dtype == torch.float32
    assert (reference.probabilities - result.probabilities).abs().max() < 0.01
    for method, maps in reference.cams.items():
        assert result.cams[method].dtype == np.float32
        for ours, theirs in zip(result.cams[method], maps, strict=True):
            assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] >= 0.95, method


def test_an_unknown_autocast_is_an_invalid_option() -> None:
    engine = cached_engine("resnet18")
    with pytest.raises(InvalidOptionError, match="autocast"):
        ExplanationEngine(engine.model, engine.spec, autocast="int8")
