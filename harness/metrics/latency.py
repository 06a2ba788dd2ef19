"""Latency of an evaluation run: client-side percentiles per model and for the whole fan-out,
the server's per-stage timings and the gateway's, and throughput.

Client-side per-model latency is the time from sending the request to that model's result
arriving on the stream; the fan-out's is the time to the last one. Server stages come from
each result's ``timings`` (decode, preprocess, forward+CAM, encode); gateway stages from the
gateway's ``GatewayTimings`` (queue, backend call, its own time).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from harness.store import ImageResult

__all__ = ["PERCENTILES", "SERVER_STAGES", "latency_summary", "percentiles", "run_span_s"]

PERCENTILES = (50, 95, 99)
SERVER_STAGES = ("decode_ms", "preprocess_ms", "core_wait_ms", "forward_cam_ms", "encode_ms")
GATEWAY_STAGES = ("gateway_queue_ms", "gateway_backend_ms", "gateway_own_ms")


def percentiles(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """n, mean and p50/p95/p99 (linear interpolation) of the finite values."""
    array = np.asarray([v for v in values if v is not None], dtype=float)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return {"n": 0, "mean": None, **{f"p{p}": None for p in PERCENTILES}}
    points = np.percentile(array, PERCENTILES)
    summary: dict[str, float | int | None] = {"n": int(array.size), "mean": float(array.mean())}
    summary.update({f"p{p}": float(v) for p, v in zip(PERCENTILES, points, strict=True)})
    return summary


def run_span_s(results: Iterable[ImageResult]) -> float:
    """Wall time from the first request sent to the last answer received."""
    spans = [(r.started_at, r.started_at + r.client_ms / 1000.0) for r in results]
    if not spans:
        return 0.0
    return max(end for _, end in spans) - min(start for start, _ in spans)


def _model_latency(results: Sequence[ImageResult], model: str) -> dict[str, Any]:
    answers = [r.answers[model] for r in results if model in r.answers]
    ok = [a for a in answers if a.ok]
    stages = {
        s: percentiles(a.timings.get(s) for a in ok) for s in (*SERVER_STAGES, *GATEWAY_STAGES)
    }
    return {
        "client_ms": percentiles(a.client_ms for a in ok),
        "backend_ms": percentiles(a.backend_ms for a in ok),
        "stages": stages,
        "batch_size": percentiles(a.timings.get("batch_size") for a in ok),
    }


def latency_summary(
    results: Mapping[str, ImageResult], models: Sequence[str], run_throughput: float | None
) -> dict[str, Any]:
    """The run's latency block of metrics.json (see docs/evaluate.md)."""
    finished = list(results.values())
    span = run_span_s(finished)
    return {
        "fan_out_client_ms": percentiles(r.client_ms for r in finished),
        "models": {model: _model_latency(finished, model) for model in models},
        "images": len(finished),
        "span_s": span,
        "throughput_images_per_s": run_throughput,
        "throughput_over_span_images_per_s": len(finished) / span if span > 0 else None,
        "note": "throughput_images_per_s is this invocation's replay; the span figure covers "
        "every stored image, including pauses between resumed runs",
    }
