"""CAM methods: each one's maths in torch, on the model's device, and the ``grad-cam`` package's
own numpy maths as the reference.

pytorch-grad-cam's classes register hooks and back-propagate through the whole network when
constructed and called, and compute the maps in numpy on the host. ptxplain captures the target
layer's activations and gradients itself (see :mod:`ptxplain.explain.engine`) and computes each
method's map with :meth:`CamMethod.cam_torch`, where the tensors already are (a GPU, for a GPU
model), so only the finished maps are copied to the host. The same formulas as grad-cam 1.5.7
(``get_cam_weights`` / ``get_cam_image`` of each class, ``get_2d_projection`` for the eigen
methods); :meth:`CamMethod.cam` runs the package's own numpy code, and the tests hold the two
equal within 1e-5. Written by hand because grad-cam has no tensor path (its maths is numpy).

The eigen methods project onto the first right singular vector, whose sign is arbitrary: grad-cam
returns whatever sign its LAPACK build gives (numpy's OpenBLAS and torch's MKL disagree on some
images, a GPU solver may too), and after the ReLU a flipped projection is a different map. Here
the sign is fixed so that the projection rises where the activations' channel mean does, the
same on every build and device; it equals grad-cam's projection up to that sign.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from pytorch_grad_cam import (
    EigenCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    XGradCAM,
)
from pytorch_grad_cam.base_cam import BaseCAM

from ptxplain.errors import InvalidOptionError, quoted
from ptxplain.explain.options import DEFAULT_METHOD

__all__ = ["DEFAULT_METHOD", "METHODS", "CamMethod", "get_method"]


def _spatial_sum(x: torch.Tensor) -> torch.Tensor:
    return x.sum(dim=(2, 3), keepdim=True)


def _gradcam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    return (grads.mean(dim=(2, 3), keepdim=True) * acts).sum(dim=1)


def _gradcam_plus_plus(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    # Equation 19 of Chattopadhyay et al. (arXiv:1710.11063), as grad-cam computes it.
    grads_2 = grads**2
    aij = grads_2 / (2 * grads_2 + _spatial_sum(acts) * grads_2 * grads + 1e-6)
    aij = torch.where(grads != 0, aij, torch.zeros_like(aij))
    weights = _spatial_sum(grads.clamp(min=0) * aij)
    return (weights * acts).sum(dim=1)


def _xgradcam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    weights = _spatial_sum(grads * acts / (_spatial_sum(acts) + 1e-7))
    return (weights * acts).sum(dim=1)


def _projection(x: torch.Tensor) -> torch.Tensor:
    """grad-cam's ``get_2d_projection``: each image's (h*w, C) activations, centred, onto their
    first right singular vector, with its sign fixed so that the projection rises where the
    activations' channel mean does (grad-cam leaves the sign to the LAPACK build)."""
    b, c, h, w = x.shape
    flat = torch.nan_to_num(x, nan=0.0).reshape(b, c, h * w).transpose(1, 2)
    centred = flat - flat.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = (centred @ vh[:, 0, :, None])[..., 0]
    agreement = (projection * centred.mean(dim=2)).sum(dim=1, keepdim=True)
    return (projection * torch.where(agreement < 0, -1.0, 1.0)).reshape(b, h, w)


_TORCH_MATHS = {
    "gradcam": _gradcam,
    "gradcam++": _gradcam_plus_plus,
    "hirescam": lambda a, g: (g * a).sum(dim=1),
    "xgradcam": _xgradcam,
    "layercam": lambda a, g: (g.clamp(min=0) * a).sum(dim=1),
    "eigencam": lambda a, g: _projection(a),
    "eigengradcam": lambda a, g: _projection(g * a),
    "gradcamelementwise": lambda a, g: (g * a).clamp(min=0).sum(dim=1),
}


@dataclasses.dataclass(frozen=True)
class CamMethod:
    name: str
    cam_class: Any  # a pytorch_grad_cam.base_cam.BaseCAM subclass
    uses_gradients: bool = True

    def cam_torch(self, activations: torch.Tensor, grads: torch.Tensor | None) -> torch.Tensor:
        """The raw CAM (B, h, w) before ReLU on the tensors' device: in float32, or in float64
        for float64 tensors (the tests' exact-maths parity); half precision is widened first."""
        dtype = torch.promote_types(activations.dtype, torch.float32)
        acts = activations.to(dtype)
        return _TORCH_MATHS[self.name](acts, acts if grads is None else grads.to(dtype))

    def cam(self, activations: np.ndarray, grads: np.ndarray | None) -> np.ndarray:
        """The reference: grad-cam's own numpy maths, (B, C, h, w) in, raw (B, h, w) out."""
        calc: BaseCAM = object.__new__(self.cam_class)
        calc.activations_and_grads = _NoHooks()  # what BaseCAM.__del__ releases
        return np.asarray(calc.get_cam_image(None, None, None, activations, grads, False))


class _NoHooks:
    """Stands in for grad-cam's hook holder: nothing was registered, nothing to release."""

    def release(self) -> None:
        return None


METHODS: dict[str, CamMethod] = {
    m.name: m
    for m in (
        CamMethod("gradcam", GradCAM),
        CamMethod("gradcam++", GradCAMPlusPlus),
        CamMethod("hirescam", HiResCAM),
        CamMethod("xgradcam", XGradCAM),
        CamMethod("layercam", LayerCAM),
        CamMethod("eigencam", EigenCAM, uses_gradients=False),
        CamMethod("eigengradcam", EigenGradCAM),
        CamMethod("gradcamelementwise", GradCAMElementWise),
    )
}


def get_method(name: str) -> CamMethod:
    try:
        return METHODS[name.strip().lower()]
    except KeyError:
        raise InvalidOptionError(
            f"unknown CAM method {quoted(name)}; known: {', '.join(METHODS)}"
        ) from None
