"""The explanation engine: logits, probabilities and CAMs for a batch from ONE forward pass.

Why it is fast: stock grad-cam makes the input require a gradient and back-propagates through
the whole network. Here no parameter and no input requires a gradient, so the forward pass
builds no autograd graph below the target layer. A forward hook on the target layer swaps its
output for a detached leaf that does require a gradient; the graph starts there, and
``torch.autograd.grad`` runs only from the explained logits down to that leaf. The hook lives
only for one call (a context manager), so hooks never pile up.

Logits-only calls run under ``torch.inference_mode``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ptxplain.errors import InvalidOptionError
from ptxplain.explain.methods import get_method
from ptxplain.explain.options import Target
from ptxplain.models.registry import ArchSpec, TokenLayout, target_layer, token_layout

__all__ = ["AUTOCAST", "Explanation", "ExplanationEngine", "Target", "resolve_targets"]

AUTOCAST = {None: None, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclasses.dataclass(frozen=True)
class Explanation:
    """Engine output for a batch of B images (CPU tensors / arrays)."""

    logits: torch.Tensor  # (B, K) float32
    probabilities: torch.Tensor  # (B, K) float32
    targets: list[int]  # explained class per image ([] when no maps were asked for)
    cams: dict[str, np.ndarray]  # method -> (B, h, w) raw CAM after ReLU, float32


def resolve_targets(
    targets: Sequence[Target], logits: torch.Tensor, positive_class: int
) -> list[int]:
    """Turn per-image target requests into class indices."""
    num_classes = logits.shape[1]
    predicted = logits.argmax(dim=1).tolist()
    resolved = []
    for i, target in enumerate(targets):
        if target == "positive":
            resolved.append(positive_class)
        elif target == "predicted":
            resolved.append(int(predicted[i]))
        elif isinstance(target, int) and 0 <= target < num_classes:
            resolved.append(target)
        else:
            raise InvalidOptionError(
                f"target {target!r} is not 'positive', 'predicted' or a class index "
                f"in 0..{num_classes - 1}"
            )
    return resolved


class _LayerCapture:
    """Forward hook that makes the target layer's output the root of the autograd graph."""

    def __init__(self) -> None:
        self.leaf: torch.Tensor | None = None

    def hook(self, module: nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
        self.leaf = output.detach().requires_grad_(True)
        # A clone keeps the leaf intact when a later op works in place on the layer's output.
        return self.leaf.clone()


@contextlib.contextmanager
def _capture(layer: nn.Module) -> Iterator[_LayerCapture]:
    capture = _LayerCapture()
    handle = layer.register_forward_hook(capture.hook)
    try:
        yield capture
    finally:
        handle.remove()


class ExplanationEngine:
    """Wraps one model of one registry architecture."""

    def __init__(self, model: nn.Module, spec: ArchSpec, autocast: str | None = None) -> None:
        """``autocast``: None (float32), "bfloat16" or "float16" — the forward pass (and so the
        captured activations and gradients) in that precision; logits and maps come back in
        float32 either way (tests/explain/test_engine.py bounds the difference)."""
        self.model = model.eval().requires_grad_(False)
        self.spec = spec
        if autocast not in AUTOCAST:
            raise InvalidOptionError(
                f"autocast must be one of {[str(k) for k in AUTOCAST]}, got {autocast!r}"
            )
        self.autocast = autocast
        self.layer = target_layer(self.model, spec)
        self.layout: TokenLayout | None = token_layout(self.model) if spec.tokens else None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _precision(self) -> contextlib.AbstractContextManager[object]:
        dtype = AUTOCAST[self.autocast]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self._precision():
            return self.model(images.to(self.device)).float().cpu()

    def explain(
        self,
        images: torch.Tensor,
        targets: Sequence[Target] | None = None,
        methods: Sequence[str] = ("gradcam",),
    ) -> Explanation:
        """Logits and one CAM per image per method. ``methods=()`` gives logits only."""
        cam_methods = [get_method(m) for m in dict.fromkeys(methods)]
        if not cam_methods:
            logits = self.logits(images)
            return Explanation(logits, logits.softmax(dim=1), [], {})
        targets = list(targets) if targets is not None else ["positive"] * len(images)
        if len(targets) != len(images):
            raise InvalidOptionError(f"{len(targets)} targets for {len(images)} images")
        with _capture(self.layer) as capture, torch.enable_grad():
            with self._precision():
                raw_logits = self.model(images.to(self.device))
            assert capture.leaf is not None, "target layer did not run"
            classes = resolve_targets(targets, raw_logits.detach(), self.spec.positive_class)
            grads = self._gradients(raw_logits, classes, capture.leaf, cam_methods)
            activations = self._to_grid(capture.leaf.detach())
        grid_grads = None if grads is None else self._to_grid(grads)
        with torch.no_grad():
            # Every method's map on the model's device; one copy of them all to the host.
            stacked = torch.stack([m.cam_torch(activations, grid_grads) for m in cam_methods])
            maps = stacked.clamp(min=0).float().cpu().numpy()
        logits = raw_logits.detach().float().cpu()
        cams = {m.name: maps[i] for i, m in enumerate(cam_methods)}
        return Explanation(logits, logits.softmax(dim=1), classes, cams)

    @staticmethod
    def _gradients(
        logits: torch.Tensor, classes: list[int], leaf: torch.Tensor, cam_methods: list
    ) -> torch.Tensor | None:
        if not any(m.uses_gradients for m in cam_methods):
            return None
        index = torch.as_tensor(classes, device=logits.device)
        score = logits.gather(1, index[:, None]).sum()
        (grad,) = torch.autograd.grad(score, leaf)
        return grad

    def _to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) token activations -> (B, C, gh, gw); CNN activations pass through."""
        if self.layout is None:
            return x
        gh, gw = self.layout.grid
        patches = x[:, self.layout.prefix_tokens :, :]
        return patches.reshape(x.shape[0], gh, gw, x.shape[2]).permute(0, 3, 1, 2)
