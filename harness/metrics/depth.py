"""Each per-model metric against depth, parameters and FLOPs: Spearman's rho, its p-value and
the number of models behind it, across all models and within each family.

With fewer than four models a correlation is "not testable" and carries no p-value; with four,
no ordering can reach p < 0.05 (the exact test's floor is 2/4! = 0.083), which the note says.
Nothing here calls a trend significant that the number of models cannot carry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from harness.metrics.stats import spearman

__all__ = ["AXES", "ModelFacts", "depth_correlations", "facts_from_registry"]

AXES = ("depth", "params", "flops")


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    """What the analysis needs to know of one served model."""

    name: str
    architecture: str
    family: str
    depth: int
    params: int
    flops: int
    trained: bool = False
    threshold: float | None = None
    # what the served metadata says of the weights (data_fingerprint, weights_source, recipe);
    # None where the serving side does not say
    provenance: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelFacts:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def facts_from_registry(name: str, architecture: str, *, trained: bool = False) -> ModelFacts:
    """Facts from the architecture registry (parameters and FLOPs counted on the meta device)."""
    from ptxplain.models.registry import get_spec, model_stats

    spec = get_spec(architecture)
    stats = model_stats(spec)
    return ModelFacts(
        name, architecture, spec.family, spec.depth, stats["params"], stats["flops"], trained
    )


def _scopes(facts: Mapping[str, ModelFacts]) -> dict[str, list[str]]:
    scopes = {"all": sorted(facts)}
    for family in sorted({f.family for f in facts.values()}):
        scopes[family] = sorted(n for n, f in facts.items() if f.family == family)
    return scopes


def depth_correlations(
    facts: Mapping[str, ModelFacts], metrics: Mapping[str, Mapping[str, float | None]]
) -> list[dict[str, Any]]:
    """One row per (metric, axis, scope): ``metrics[metric][model]`` against the model's axis
    value; models without a value for the metric are left out and the row's n says so."""
    rows = []
    for metric, by_model in metrics.items():
        for scope, members in _scopes(facts).items():
            models = [m for m in members if by_model.get(m) is not None]
            values = np.array([by_model[m] for m in models], dtype=float)
            for axis in AXES:
                x = np.array([getattr(facts[m], axis) for m in models], dtype=float)
                correlation = spearman(x, values)
                rows.append(
                    {
                        "metric": metric,
                        "axis": axis,
                        "scope": scope,
                        "models": models,
                        "missing_models": sorted(set(members) - set(models)),
                        **correlation.to_json(),
                    }
                )
    return rows
