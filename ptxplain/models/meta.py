"""Metadata that travels with a checkpoint and inside every model archive (``ptxplain-model.json``).

Training writes it; ``ptxplain archive`` copies it into the archive; the TorchServe handler reads
it to know the architecture, input size, normalization, classes and decision threshold.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ptxplain.errors import WeightsError
from ptxplain.models.registry import ArchSpec, get_spec

__all__ = ["META_FILENAME", "ModelMeta"]

META_FILENAME = "ptxplain-model.json"


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

    @classmethod
    def for_spec(cls, spec: ArchSpec, input_size: int | None = None, **kw: Any) -> ModelMeta:
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
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def write(self, path: Path) -> Path:
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def read(cls, path: Path) -> ModelMeta:
        try:
            raw = json.loads(path.read_text())
            raw["mean"], raw["std"] = tuple(raw["mean"]), tuple(raw["std"])
            raw["classes"] = tuple(raw["classes"])
            return cls(**raw)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise WeightsError(f"cannot read model metadata {path}: {exc}") from exc
