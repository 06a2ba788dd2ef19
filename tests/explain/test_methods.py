"""Each CAM method's torch maths (what the engine runs, on the model's device) against the grad-cam
package's own numpy maths, on the same activations and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptxplain.explain.methods import METHODS, get_method


def _tensors(seed: int, shape: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Post-ReLU activations with one dominant spatial pattern, as a trained layer's have (on pure
    noise the first two singular values nearly tie, and the eigen methods' projection is then
    ill-conditioned in float32: numpy and torch agree only to ~1e-3 there)."""
    generator = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    pattern = torch.randn(b, 1, h, w, generator=generator)
    loadings = torch.rand(b, c, 1, 1, generator=generator)
    noise = 0.3 * torch.randn(shape, generator=generator)
    acts = torch.relu(3 * loadings * pattern + noise)
    grads = torch.randn(shape, generator=generator) * 1e-2
    grads[:, :, 0, 0] = 0  # exact zeros: gradcam++ treats them apart
    return acts, grads


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("shape", [(3, 64, 7, 7), (2, 384, 14, 14), (1, 8, 3, 5)])
def test_torch_maths_equals_grad_cams_numpy(name: str, shape: tuple[int, int, int, int]) -> None:
    method = get_method(name)
    acts, grads = _tensors(sum(shape), shape)
    ours = method.cam_torch(acts, grads if method.uses_gradients else None)
    reference = method.cam(acts.numpy(), grads.numpy() if method.uses_gradients else None)
    assert ours.shape == reference.shape == (shape[0], shape[2], shape[3])
    assert ours.dtype == torch.float32 and reference.std() > 0
    scale = float(np.abs(reference).max())
    if name.startswith("eigen"):  # a singular vector's sign is arbitrary: see the module
        signs = np.sign((ours.numpy() * reference).sum(axis=(1, 2)))[:, None, None]
        reference = reference * signs
    np.testing.assert_allclose(ours.numpy() / scale, reference / scale, atol=1e-5)


def test_half_precision_inputs_are_computed_in_float32() -> None:
    acts, grads = _tensors(0, (2, 16, 4, 4))
    ours = get_method("gradcam").cam_torch(acts.bfloat16(), grads.bfloat16())
    assert ours.dtype == torch.float32


@pytest.mark.parametrize("name", ["eigencam", "eigengradcam"])
def test_eigen_projections_rise_with_the_channel_mean(name: str) -> None:
    acts, grads = _tensors(7, (4, 32, 6, 6))
    x = acts if name == "eigencam" else grads * acts
    projection = get_method(name).cam_torch(acts, grads)
    channel_mean = (x - x.mean(dim=(2, 3), keepdim=True)).mean(dim=1)
    assert ((projection * channel_mean).sum(dim=(1, 2)) > 0).all()
