"""Metadata that travels with a checkpoint and inside every model archive (``ptxplain-model.json``).

Training writes it; ``ptxplain archive`` copies it into the archive; the TorchServe handler reads
it to know the architecture, input size, normalization, classes and decision threshold.

Provenance: ``dataset`` (the data set's name, e.g. ``phantom``), ``synthetic``, ``data_fingerprint``
(data + split), ``train_ids_sha256`` (the training images' ids), ``recipe`` (profile and
hyperparameters, with its ``settings_key``), ``cam_grid`` (rows x columns of the CAM target
layer at ``input_size``) and ``training_digests`` / ``training_digests_sha256`` (how many pixel
digests of train and validation images ``train-digests.bin`` beside the weights holds, and that
file's SHA-256; 0 and "" when none was written, see :mod:`ptxplain.imaging.digest`). :attr:`ModelMeta.trained_on` is the short label shown wherever the model
is ("phantom (synthetic)", "siim", "untrained").
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from ptxplain.errors import WeightsError
from ptxplain.models.registry import ArchSpec, get_spec, target_layer, token_layout

__all__ = ["META_FILENAME", "ModelMeta", "cam_grid"]

META_FILENAME = "ptxplain-model.json"


def cam_grid(spec: ArchSpec, input_size: int | None = None) -> tuple[int, int]:
    """Rows x columns of the CAM target layer's map at ``input_size`` (on the meta device)."""
    size = input_size or spec.input_size
    with torch.device("meta"):
        model = spec.build(size)
        if spec.tokens:
            return token_layout(model).grid
        shapes: list[tuple[int, ...]] = []
        hook = target_layer(model, spec).register_forward_hook(
            lambda _m, _i, out: shapes.append(tuple(out.shape))
        )
        try:
            with torch.no_grad():
                model(torch.empty(1, 3, size, size))
        finally:
            hook.remove()
    return int(shapes[0][-2]), int(shapes[0][-1])


@dataclasses.dataclass(frozen=True)
class ModelMeta:
    """What a served model is. ``trained=False`` marks random-init weights."""

    architecture: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classes: tuple[str, ...]
    positive_class: int = 1
    threshold: float = 0.5
    trained: bool = False
    weights_source: str = "random-init"
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    data_fingerprint: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    dataset: str = ""
    synthetic: bool = False
    train_ids_sha256: str = ""
    recipe: dict[str, Any] = dataclasses.field(default_factory=dict)
    cam_grid: tuple[int, int] | None = None
    training_digests: int = 0
    training_digests_sha256: str = ""

    @property
    def trained_on(self) -> str:
        """What the weights were trained on, for people: "phantom (synthetic)", "siim", ..."""
        if not self.trained:
            return "untrained"
        name = self.dataset or "unrecorded data"
        return f"{name} (synthetic)" if self.synthetic else name

    @classmethod
    def for_spec(cls, spec: ArchSpec, input_size: int | None = None, **kw: Any) -> ModelMeta:
        kw.setdefault("cam_grid", cam_grid(spec, input_size))
        return cls(
            architecture=spec.name,
            input_size=input_size or spec.input_size,
            mean=spec.mean,
            std=spec.std,
            classes=spec.classes,
            positive_class=spec.positive_class,
            **kw,
        )

    @property
    def spec(self) -> ArchSpec:
        return get_spec(self.architecture)

    def to_json(self) -> str:
        values = dataclasses.asdict(self) | {"trained_on": self.trained_on}
        return json.dumps(values, indent=2, sort_keys=True)

    def write(self, path: Path) -> Path:
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def read(cls, path: Path) -> ModelMeta:
        try:
            return cls.from_json(path.read_text())
        except OSError as exc:
            raise WeightsError(f"cannot read model metadata {path}: {exc}") from exc
        except WeightsError as exc:
            raise WeightsError(f"cannot read model metadata {path}: {exc.message}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelMeta:
        try:
            raw = json.loads(text)
            raw.pop("trained_on", None)  # derived, written for readers of the file
            raw["mean"], raw["std"] = tuple(raw["mean"]), tuple(raw["std"])
            raw["classes"] = tuple(raw["classes"])
            if raw.get("cam_grid") is not None:
                raw["cam_grid"] = tuple(raw["cam_grid"])
            return cls(**raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise WeightsError(f"malformed model metadata ({exc})") from exc
