"""The gateway benchmark's bookkeeping (the benchmark itself runs with `ptxplain bench gateway`)."""

from __future__ import annotations

from harness.bench.gateway import _own_times, _pass_through_gain, report_lines
from ptxplain.v1 import explainer_pb2 as epb
from tests.gateway.fakes import result_bytes


def test_pass_through_and_reparse_build_the_same_response() -> None:
    gain = _pass_through_gain([result_bytes("a", side=7), result_bytes("b", code=3, message="bad")])
    assert gain["reparse_us"] > 0 and gain["pass_through_us"] > 0


def test_own_times_and_the_report_say_whether_each_target_is_met() -> None:
    response = epb.ExplainResponse()
    response.results.add(gateway_timings=epb.GatewayTimings(queue_ms=0.25, gateway_ms=0.3))
    figures = {
        "settings": {"models": ["resnet18", "vit_s16"], "size": 224, "repeats": 3, "threads": 1},
        "medians_ms": {
            "engine": 40.0,
            "torchserve": 50.0,
            "gateway": 61.0,
            "engine_sum": 100.0,
            "gateway_all": 105.0,
        },
        "gateway_own_ms": _own_times([response]),
        "bytes": {"response_bytes": 300, "result_bytes": 200, "added_per_model": 50.0},
        "pass_through_native": {"reparse_us": 5.0, "pass_through_us": 4.0},
        "pass_through_input_size": {"reparse_us": 50.0, "pass_through_us": 20.0},
    }
    text = "\n".join(report_lines(figures))
    assert "target <= engine + 20 ms: MISSED" in text  # 61 > 40 + 20
    assert "(1.05x) -> target <= 1.1x: met" in text
    assert "total 0.30 ms -> target <= 2 ms: met" in text and "+50 B per model" in text
