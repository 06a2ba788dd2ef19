"""Benchmark: plain forward vs stock grad-cam vs ptxplain's engine, per architecture.

Each repeat times the three side by side (interleaved, same model, same input, same torch
thread count), and the table reports medians. "stock" is pytorch-grad-cam's ``GradCAM`` used as
its README shows (parameters requiring gradients, full backward); "ptxplain" is
``ExplanationEngine.explain`` plus the map upsampled to input size, so both produce the same
thing: logits and a normalized input-size Grad-CAM per image.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from ptxplain.explain.engine import ExplanationEngine
from ptxplain.explain.maps import scaled_map
from ptxplain.models.registry import ArchSpec

__all__ = ["BenchRow", "bench_arch", "summarize", "timed_ms"]


@dataclasses.dataclass(frozen=True)
class BenchRow:
    arch: str
    batch: int
    threads: int
    forward_ms: float
    stock_ms: float
    ptxplain_ms: float

    @property
    def stock_ratio(self) -> float:
        return self.stock_ms / self.forward_ms

    @property
    def ptxplain_ratio(self) -> float:
        return self.ptxplain_ms / self.forward_ms


def timed_ms(fn: Callable[[], object], device: torch.device | None = None) -> float:
    """Wall milliseconds of ``fn``; on a GPU, with the queued kernels finished on both ends."""
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1000.0


def _stock_reshape(engine: ExplanationEngine) -> Callable[[torch.Tensor], torch.Tensor] | None:
    layout = engine.layout
    if layout is None:
        return None

    def reshape(acts: torch.Tensor) -> torch.Tensor:
        grid = acts[:, layout.prefix_tokens :, :]
        return grid.reshape(acts.shape[0], *layout.grid, acts.shape[2]).permute(0, 3, 1, 2)

    return reshape


def _runners(engine: ExplanationEngine, images: torch.Tensor) -> dict[str, Callable[[], object]]:
    size = (images.shape[-2], images.shape[-1])
    targets = [ClassifierOutputTarget(engine.spec.positive_class)] * len(images)
    stock = GradCAM(engine.model, [engine.layer], reshape_transform=_stock_reshape(engine))

    def run_stock() -> object:
        engine.model.requires_grad_(True)
        try:
            return stock(images, targets)
        finally:
            engine.model.requires_grad_(False)
            engine.model.zero_grad(set_to_none=True)

    def run_ours() -> object:
        cams = engine.explain(images, ["positive"] * len(images), ["gradcam"]).cams["gradcam"]
        return [scaled_map(cam, size, True) for cam in cams]

    return {"forward": lambda: engine.logits(images), "stock": run_stock, "ptxplain": run_ours}


def bench_arch(
    spec: ArchSpec,
    batches: Sequence[int],
    repeats: int,
    size: int | None = None,
    device: str = "cpu",
) -> Iterator[BenchRow]:
    """Yield one row per batch size for ``spec`` (random-init weights, seeded input)."""
    torch.manual_seed(0)
    where = torch.device(device)
    engine = ExplanationEngine(spec.build(size).to(where), spec)
    side = size or spec.input_size
    for batch in batches:
        images = torch.randn(batch, 3, side, side, device=where)
        runners = _runners(engine, images)
        for run in runners.values():  # warm-up
            run()
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(repeats):
            for name, run in runners.items():
                times[name].append(timed_ms(run, where))
        med = {name: statistics.median(values) for name, values in times.items()}
        yield BenchRow(
            spec.name, batch, torch.get_num_threads(), med["forward"], med["stock"], med["ptxplain"]
        )


def summarize(rows: Sequence[BenchRow], max_ratio: float, max_median: float) -> list[str]:
    ratios = [row.ptxplain_ratio for row in rows]
    worst = max(rows, key=lambda row: row.ptxplain_ratio)
    median = statistics.median(ratios)
    return [
        f"ptxplain / forward: worst {worst.ptxplain_ratio:.3f} ({worst.arch} batch {worst.batch}), "
        f"median {median:.3f}; stock / forward median "
        f"{statistics.median(row.stock_ratio for row in rows):.3f}",
        f"target: every ratio <= {max_ratio} -> {'met' if worst.ptxplain_ratio <= max_ratio else 'MISSED'}; "
        f"median <= {max_median} -> {'met' if median <= max_median else 'MISSED'}",
    ]
