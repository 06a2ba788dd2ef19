"""The answer in words on a hand-made metrics document: verdicts with their figures, "not
testable" with the reason, the paper's figures with their source, SYNTHETIC first."""

from __future__ import annotations

from typing import Any

from harness.metrics.answer import answer_lines, fmt
from ptxplain.cli.evaluate import answer_box


def _interval(estimate: float, low: float, high: float) -> dict[str, float]:
    return {"estimate": estimate, "low": low, "high": high}


def _model(family: str, depth: int, params: int) -> dict[str, Any]:
    refs = {"uniform": 0.0072, "random": 0.005, "ideal": 0.027, "mask": 1.0}
    return {
        "family": family,
        "depth": depth,
        "params": params,
        "localization": {"n": 40, "calibration": {"effective_heat_ratio": {"references": refs}}},
    }


def _metrics(synthetic: bool = True) -> dict[str, Any]:
    return {
        "synthetic": synthetic,
        "models": {
            "resnet18": _model("resnet", 18, 11),
            "resnet34": _model("resnet", 34, 21),
            "resnet50": _model("resnet", 50, 23),
            "vgg16": _model("vgg", 16, 134),
            "vit_s16": _model("vit", 12, 21),
        },
        "learned": {
            "models": ["resnet18", "resnet34", "resnet50", "vgg16"],
            "excluded": {"vit_s16": "did not learn: test AUROC 0.450 [0.330, 0.570]"},
        },
        "paired_localization": [
            {
                "scope": "resnet",
                "a": [a],
                "b": [b],
                "metric": "effective_heat_ratio",
                "n": 40,
                "difference": d,
            }
            for a, b, d in (
                ("resnet34", "resnet18", _interval(0.10, 0.02, 0.18)),
                ("resnet50", "resnet18", _interval(0.20, 0.11, 0.30)),
                ("resnet50", "resnet34", _interval(0.10, 0.01, 0.19)),
            )
        ],
        "paired_auroc": [
            {
                "model_a": "resnet18",
                "model_b": "resnet34",
                "auroc_difference": _interval(0.05, 0.01, 0.09),
                "delong": {"z": 2.1, "p_value": 0.036, "method": "delong"},
            },
            {
                "model_a": "resnet18",
                "model_b": "vgg16",
                "auroc_difference": _interval(0.0, -0.1, 0.1),
                "delong": {},
            },
        ],
    }


def test_answer_reads_verdicts_with_figures() -> None:
    lines = answer_lines(_metrics())
    assert lines[0].startswith("SYNTHETIC")
    resnet = next(line for line in lines if line.startswith("resnet: localization"))
    assert "improves with depth" in resnet  # every larger-minus-smaller interval above 0
    assert "resnet50 − resnet18 = +0.200 [+0.110, +0.300] (n = 40)" in resnet
    vgg = next(line for line in lines if line.startswith("vgg: does localization"))
    assert "not testable — 1 learned model" in vgg
    vit = next(line for line in lines if line.startswith("vit: does localization"))
    assert "excluded: vit_s16 (did not learn" in vit
    assert any(line.startswith("CNNs versus ViTs: not testable — no learned ViT") for line in lines)
    # resnet18 - resnet34 = +0.05 is turned around: the deeper model's AUROC is 0.05 lower.
    accuracy = next(line for line in lines if line.startswith("resnet: test AUROC"))
    assert "falls with depth" in accuracy
    assert "AUROC resnet34 − resnet18 = -0.050 [-0.090, -0.010], DeLong p = 0.036" in accuracy
    assert "Chance level: a uniform map scores EHR 0.0072" in lines[-2]
    assert "secondary summary of the paper" in lines[-1]
    assert "ResNet-101 0.0319, VGG-16 0.0243, ViTs 0.0145–0.0171" in lines[-1]


def test_mixed_intervals_are_no_consistent_change_and_real_data_is_not_synthetic() -> None:
    metrics = _metrics(synthetic=False)
    metrics["paired_localization"][0]["difference"] = _interval(-0.05, -0.12, 0.02)
    lines = answer_lines(metrics)
    assert not any("SYNTHETIC" in line for line in lines)
    assert any("no consistent change with depth" in line for line in lines)


def test_fmt_and_the_printed_box() -> None:
    assert fmt(None) == "—" and fmt({"estimate": None}) == "—"
    assert fmt({"estimate": 0.5, "low": None}) == "0.500"
    box = answer_box(_metrics())
    assert box.splitlines()[1] == "ANSWER (SYNTHETIC)"
    assert all(len(line) <= 78 for line in box.splitlines())


def test_provenance_says_whether_the_test_images_were_held_out() -> None:
    from harness.evaluate.client import _provenance
    from harness.metrics.answer import trained_on

    served = {
        "trained_on": "phantom (synthetic)",
        "data_fingerprint": "ab" * 32,
        "cam_grid": [3, 3],
    }
    assert _provenance(served.get) == served
    assert _provenance({"trained_on": "", "input_size": 0}.get) is None  # unset fields
    model = {"trained": True, "provenance": served}
    assert trained_on(model, "ab" * 32) == (
        "this data set's train split (phantom (synthetic))",
        True,
    )
    where, held_out = trained_on(model, "cd" * 32)
    assert where.startswith("other data: phantom (synthetic)") and not held_out
    assert trained_on({"trained": True}, "ab" * 32) == (
        "unknown (not in the served metadata)",
        False,
    )
    assert trained_on({"trained": False}, None)[1]
    metrics = _metrics()
    metrics["run"] = {"train_fingerprint": "ab" * 32}
    for name, m in metrics["models"].items():
        m["provenance"] = {
            **served,
            "data_fingerprint": "cd" * 32 if name == "vgg16" else "ab" * 32,
        }
    lines = answer_lines(metrics)
    assert "Provenance — test images not proven held out (vgg16: other data" in " ".join(lines)
