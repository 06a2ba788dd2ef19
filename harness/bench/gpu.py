"""``ptxplain bench gpu``: the prepared GPU check, one table, in minutes on one GPU.

1. engine    per study architecture at 224 px, batch 1 / 8 / 32: plain forward, stock
             pytorch-grad-cam and ptxplain's engine (float32, and bfloat16 autocast), and the
             ratios to the forward;
2. memory    the GPU memory each model holds when loaded and at its peak during a batch-8
             explain — what decides how many models share one GPU;
3. stack     the live stack with every study model on the one GPU (archives with deviceType
             gpu, TorchServe + gateway, closed loop over gRPC), when Java and TorchServe are
             there; else the line says what was missing.

The same code runs on the CPU (``--device cpu``, what the tests do), so CI exercises it.
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from harness.bench.engine import bench_arch, timed_ms
from ptxplain.errors import ConfigError
from ptxplain.explain.engine import ExplanationEngine
from ptxplain.models.registry import get_spec, list_specs

__all__ = ["DeviceBenchSettings", "report_lines", "run_device_bench"]

Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class DeviceBenchSettings:
    models: tuple[str, ...] = tuple(s.name for s in list_specs() if s.in_study)
    size: int = 224
    batches: tuple[int, ...] = (1, 8, 32)
    repeats: int = 5
    device: str = "cuda"
    stack_seconds: float = 20.0
    stack_concurrency: tuple[int, ...] = (8, 32)


def _device(settings: DeviceBenchSettings) -> torch.device:
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "bench gpu needs a CUDA GPU and torch.cuda.is_available() is False on this machine "
            "(use --device cpu to run the same measurements on the CPU)"
        )
    return torch.device(settings.device)


def _engine_rows(settings: DeviceBenchSettings, say: Say) -> list[dict[str, Any]]:
    rows = []
    for name in settings.models:
        spec = get_spec(name)
        for row in bench_arch(
            spec, settings.batches, settings.repeats, settings.size, settings.device
        ):
            rows.append({**dataclasses.asdict(row), "bf16_ms": _bf16_ms(spec, row.batch, settings)})
            say(f"{name} batch {row.batch}: ptxplain / forward {row.ptxplain_ratio:.3f}")
    return rows


def _bf16_ms(spec: Any, batch: int, settings: DeviceBenchSettings) -> float:
    where = torch.device(settings.device)
    engine = ExplanationEngine(spec.build(settings.size).to(where), spec, autocast="bfloat16")
    images = torch.randn(batch, 3, settings.size, settings.size, device=where)
    engine.explain(images)  # warm-up
    return statistics.median(
        timed_ms(lambda: engine.explain(images), where) for _ in range(settings.repeats)
    )


def _memory(settings: DeviceBenchSettings) -> dict[str, dict[str, float]]:
    """MiB held by each model's weights and at the peak of a batch-8 explain (CUDA only)."""
    where = torch.device(settings.device)
    if where.type != "cuda":
        return {}
    out = {}
    for name in settings.models:
        spec = get_spec(name)
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(where)
        engine = ExplanationEngine(spec.build(settings.size).to(where), spec)
        loaded = torch.cuda.memory_allocated(where) - before
        torch.cuda.reset_peak_memory_stats(where)
        engine.explain(torch.randn(8, 3, settings.size, settings.size, device=where))
        peak = torch.cuda.max_memory_allocated(where) - before
        out[name] = {"weights_mib": loaded / 2**20, "peak_batch8_mib": peak / 2**20}
        del engine
    return out


def _stack(settings: DeviceBenchSettings, say: Say) -> dict[str, Any]:
    missing = [tool for tool in ("java", "torchserve") if shutil.which(tool) is None]
    if missing:
        return {"skipped": f"not on PATH: {', '.join(missing)}"}
    from harness.bench.throughput import ThroughputSettings, run_throughput_bench

    live = ThroughputSettings(
        models=settings.models,
        size=settings.size,
        threads=1,
        concurrency=settings.stack_concurrency,
        seconds=settings.stack_seconds,
        transports=("grpc",),
        cores=1,
        device="gpu" if settings.device == "cuda" else "cpu",
    )
    return run_throughput_bench(live, say)


def run_device_bench(settings: DeviceBenchSettings, say: Say = print) -> dict[str, Any]:
    where = _device(settings)
    started = time.perf_counter()
    name = torch.cuda.get_device_name(where) if where.type == "cuda" else "cpu"
    say(f"device: {name}, torch {torch.__version__}")
    figures: dict[str, Any] = {
        "settings": dataclasses.asdict(settings),
        "device_name": name,
        "engine": _engine_rows(settings, say),
        "memory": _memory(settings),
        "stack": _stack(settings, say),
    }
    figures["seconds"] = time.perf_counter() - started
    return figures


def report_lines(figures: dict[str, Any]) -> list[str]:
    lines = [
        f"{figures['device_name']}: {figures['settings']['size']} px, medians of "
        f"{figures['settings']['repeats']} ({figures['seconds']:.0f} s in all)",
        f"{'arch':<16}{'batch':>6}{'forward ms':>12}{'stock ms':>10}{'ptxplain ms':>13}"
        f"{'bf16 ms':>9}{'ptx/fwd':>9}{'stock/fwd':>11}",
    ]
    memory = figures["memory"]
    for row in figures["engine"]:
        lines.append(
            f"{row['arch']:<16}{row['batch']:>6}{row['forward_ms']:>12.2f}{row['stock_ms']:>10.2f}"
            f"{row['ptxplain_ms']:>13.2f}{row['bf16_ms']:>9.2f}"
            f"{row['ptxplain_ms'] / row['forward_ms']:>9.3f}{row['stock_ms'] / row['forward_ms']:>11.2f}"
        )
    for name, mib in memory.items():
        lines.append(
            f"memory {name:<16} weights {mib['weights_mib']:8.1f} MiB, "
            f"peak at batch 8 {mib['peak_batch8_mib']:8.1f} MiB"
        )
    stack = figures["stack"]
    if "skipped" in stack:
        lines.append(f"live stack: skipped ({stack['skipped']})")
    else:
        from harness.bench.throughput import report_lines as stack_lines

        lines += stack_lines(stack)
    return lines
