"""``ptxplain bench throughput`` end to end on a tiny stack: a real TorchServe and gateway, both
transports, two concurrency levels; the table carries both ratios."""

from __future__ import annotations

import pytest

from harness.bench.throughput import ThroughputSettings, report_lines, run_throughput_bench


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
