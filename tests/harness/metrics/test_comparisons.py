"""Which models take part in comparisons, which pairs are compared, and the paired
differences of calibrated scores on hand-made rows."""

from __future__ import annotations

import pytest

from harness.metrics.comparisons import comparison_pairs, learned_models, paired_localization
from harness.metrics.depth import ModelFacts

FACTS = {
    "resnet18": ModelFacts("resnet18", "resnet18", "resnet", 18, 11, 1),
    "resnet50": ModelFacts("resnet50", "resnet50", "resnet", 50, 23, 1),
    "vgg16": ModelFacts("vgg16", "vgg16", "vgg", 16, 134, 1),
    "vit_s16": ModelFacts("vit_s16", "vit_s16", "vit", 12, 21, 1),
}


def _block(estimate: float | None, low: float | None) -> dict[str, object]:
    auroc = {"estimate": estimate, "low": low, "high": None if low is None else low + 0.2}
    return {"classification": {"metrics": {"auroc": auroc}}}


def test_only_models_whose_auroc_interval_clears_chance_have_learned() -> None:
    models = {
        "resnet18": _block(0.95, 0.9),
        "resnet50": _block(0.7, 0.51),
        "vgg16": _block(None, None),
        "vit_s16": _block(0.45, 0.33),
    }
    learned, excluded = learned_models(models)
    assert learned == ["resnet18", "resnet50"]
    assert "did not learn: test AUROC 0.450 [0.330, 0.530]" in excluded["vit_s16"]
    assert excluded["vgg16"].startswith("no test AUROC")


def test_pairs_within_families_larger_first_and_cnns_against_vits() -> None:
    pairs = comparison_pairs(FACTS, ["resnet18", "resnet50", "vgg16", "vit_s16"])
    assert pairs == [
        ("resnet", ["resnet50"], ["resnet18"]),
        ("cnn_vs_vit", ["resnet18", "resnet50", "vgg16"], ["vit_s16"]),
    ]
    assert comparison_pairs(FACTS, ["resnet18", "vgg16"]) == []


def _rows(raw: float, images: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for image in images:
        row = {}
        for metric in ("effective_heat_ratio", "grid_pointing_game", "energy_pointing_game"):
            row.update(
                {
                    metric: raw,
                    f"uniform:{metric}": 0.1,
                    f"ideal:{metric}": 0.5,
                    f"random:{metric}": 0.1,
                }
            )
        out[image] = row
    return out


def test_paired_difference_of_calibrated_scores_on_shared_images() -> None:
    # resnet50 sits at its ideal (calibrated 1), resnet18 halfway (0.5); resnet18 also scored
    # an image resnet50 did not answer, which the pair leaves out.
    rows = {
        "resnet50": _rows(0.5, ["a", "b", "c"]),
        "resnet18": _rows(0.3, ["a", "b", "c", "d"]),
    }
    entries = paired_localization(FACTS, ["resnet18", "resnet50"], rows, n_boot=100)
    ehr = next(e for e in entries if e["metric"] == "effective_heat_ratio")
    assert (ehr["scope"], ehr["a"], ehr["b"], ehr["n"]) == ("resnet", ["resnet50"], ["resnet18"], 3)
    assert ehr["difference"]["estimate"] == pytest.approx(0.5)
    assert ehr["difference"]["low"] == pytest.approx(0.5)
    assert ehr["ci_excludes_zero"]
    assert {e["metric"] for e in entries} == {
        "effective_heat_ratio",
        "grid_pointing_game",
        "energy_pointing_game",
    }
