"""CAM methods, computed by the ``grad-cam`` package's own per-method math.

pytorch-grad-cam's classes register hooks and back-propagate through the whole network when
constructed and called. ptxplain captures the target layer's activations and gradients itself
(see :mod:`ptxplain.explain.engine`) and hands them to each class's ``get_cam_image`` — the method's
math, exactly as the package computes it — through an instance made without ``__init__`` (so no
hooks are ever registered on the model).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
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

from ptxplain.errors import InvalidOptionError
from ptxplain.explain.options import DEFAULT_METHOD

__all__ = ["DEFAULT_METHOD", "METHODS", "CamMethod", "get_method"]


@dataclasses.dataclass(frozen=True)
class CamMethod:
    name: str
    cam_class: Any  # a pytorch_grad_cam.base_cam.BaseCAM subclass
    uses_gradients: bool = True

    def cam(self, activations: np.ndarray, grads: np.ndarray | None) -> np.ndarray:
        """The raw CAM (B, h, w) before ReLU, from (B, C, h, w) activations and gradients."""
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
            f"unknown CAM method {name!r}; known: {', '.join(METHODS)}"
        ) from None
