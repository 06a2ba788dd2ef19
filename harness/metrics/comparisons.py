"""Image-level paired comparisons of localization: the same positives, two models (or two
groups of models), the difference of their calibrated scores with a paired bootstrap interval.

Which models take part: only models that *learned* — test AUROC interval above 0.5 — since a
map from a classifier at chance says nothing about its architecture; the others are listed
with the reason. Pairs: within each family every pair ordered by (depth, parameters), the
larger minus the smaller; and all learned CNNs against all learned ViTs (each group's score is
the mean of its members' calibrated scores on the same resampled images).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.metrics.baselines import calibrated_statistic
from harness.metrics.depth import ModelFacts
from harness.metrics.stats import IndexStatistic, paired_difference

__all__ = [
    "PAIRED_METRICS",
    "VIT_FAMILY",
    "comparison_pairs",
    "learned_models",
    "paired_localization",
]

PAIRED_METRICS = ("effective_heat_ratio", "grid_pointing_game", "energy_pointing_game")
VIT_FAMILY = "vit"


def learned_models(models: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """(names whose test AUROC interval lies above 0.5, {excluded name: why})."""
    learned, excluded = [], {}
    for name, block in models.items():
        auroc = block["classification"]["metrics"]["auroc"]
        if auroc["low"] is not None and auroc["low"] > 0.5:
            learned.append(name)
        elif auroc["estimate"] is None:
            excluded[name] = "no test AUROC (no answers, or one class only)"
        else:
            low = "—" if auroc["low"] is None else f"{auroc['low']:.3f}"
            high = "—" if auroc["high"] is None else f"{auroc['high']:.3f}"
            excluded[name] = (
                f"did not learn: test AUROC {auroc['estimate']:.3f} [{low}, {high}] "
                "does not exclude 0.5"
            )
    return learned, excluded


def _size(facts: ModelFacts) -> tuple[int, int]:
    return facts.depth, facts.params


def comparison_pairs(
    facts: Mapping[str, ModelFacts], learned: Sequence[str]
) -> list[tuple[str, list[str], list[str]]]:
    """(scope, group A, group B): each family's pairs (larger - smaller) and CNNs - ViTs."""
    pairs: list[tuple[str, list[str], list[str]]] = []
    for family in sorted({facts[m].family for m in learned}):
        members = sorted(
            (m for m in learned if facts[m].family == family), key=lambda m: _size(facts[m])
        )
        for small, large in itertools.combinations(members, 2):
            pairs.append((family, [large], [small]))
    cnns = [m for m in learned if facts[m].family != VIT_FAMILY]
    vits = [m for m in learned if facts[m].family == VIT_FAMILY]
    if cnns and vits:
        pairs.append(("cnn_vs_vit", cnns, vits))
    return pairs


def _group_statistic(
    rows: Mapping[str, Mapping[str, Mapping[str, Any]]],
    group: Sequence[str],
    shared: Sequence[str],
    metric: str,
) -> IndexStatistic:
    members = [calibrated_statistic([rows[m][i] for i in shared], metric) for m in group]
    return lambda idx: float(np.mean([statistic(idx) for statistic in members]))


def paired_localization(
    facts: Mapping[str, ModelFacts],
    learned: Sequence[str],
    rows: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One entry per (pair, metric). ``rows[model][image_id]`` is a scored localization row
    with the references; only images every model of the pair scored are used."""
    out = []
    for scope, group_a, group_b in comparison_pairs(facts, learned):
        shared = sorted(set.intersection(*(set(rows.get(m, {})) for m in (*group_a, *group_b))))
        for metric in PAIRED_METRICS:
            difference = paired_difference(
                _group_statistic(rows, group_a, shared, metric),
                _group_statistic(rows, group_b, shared, metric),
                len(shared),
                n_boot=n_boot,
                seed=seed,
            )
            out.append(
                {
                    "scope": scope,
                    "a": list(group_a),
                    "b": list(group_b),
                    "metric": metric,
                    "n": len(shared),
                    "difference": difference.to_json(),
                    "ci_excludes_zero": bool(difference.low > 0 or difference.high < 0),
                }
            )
    return out
