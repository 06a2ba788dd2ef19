"""``ptxplain bench throughput`` end to end on a tiny stack: a real TorchServe and gateway, both
transports, two concurrency levels; the table carries both ratios."""

from __future__ import annotations

import pytest

from harness.bench.throughput import (
    ThroughputSettings,
    _plan,
    report_lines,
    run_throughput_bench,
)


def _reference(**per_image_ms: float) -> dict:
    return {
        "per_model": {
            m: {"prepare_ms": 1.0, "batch1_ms": 2 * ms, "batched_ms": ms - 1.0}
            for m, ms in per_image_ms.items()
        }
    }


def test_the_stack_is_planned_from_the_references_costs() -> None:
    reference = _reference(resnet18=4.0, vgg16_bn=47.5, vit_s16=12.0)
    settings = ThroughputSettings(models=("resnet18", "vgg16_bn", "vit_s16"), cores=2)
    plan = _plan(settings, reference)
    assert plan["workers"] == {"resnet18": 1, "vgg16_bn": 2, "vit_s16": 1}
    assert "vgg16_bn" in "\n".join(plan["lines"])
    one_each = _plan(ThroughputSettings(models=("resnet18", "vgg16_bn"), workers=1), reference)
    assert one_each["workers"] == {"resnet18": 1, "vgg16_bn": 1}
    assert one_each["lines"] == ["workers: 1 per model (--workers 1)"]


@pytest.mark.live
def test_throughput_bench_measures_the_stack_beside_the_reference() -> None:
    settings = ThroughputSettings(
        models=("resnet18",),
        size=32,
        batch_size=2,
        concurrency=(1, 2),
        seconds=1.5,
        images=2,
        image_size=64,
    )
    figures = run_throughput_bench(settings, say=lambda line: None)
    reference = figures["reference"]
    assert reference["image_ms_batch1"] > 0 and reference["limit_per_s_batched"] > 0
    for transport in ("grpc", "http"):
        levels = figures["stack"][transport]
        assert set(levels) == {1, 2}
        for level in levels.values():
            assert level["requests"] > 0 and not level["failures"], level
            assert set(level["batch_sizes"]) <= {1, 2}
            assert {"decode", "forward_cam", "gateway", "client <-> gateway"} <= set(
                level["stages_ms"]
            )
    text = "\n".join(report_lines(figures))
    assert "saturated / batched limit" in text and "concurrency-1 p50" in text
    assert "workers planned for" in text and "resnet18" in figures["plan"]["workers"]
