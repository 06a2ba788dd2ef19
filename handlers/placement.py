"""Cost-proportional worker placement: how many TorchServe workers each model gets.

With every request fanned out to every model, a saturated stack serves at most
``cores / sum(cost)`` requests per second (cost: one model's CPU milliseconds per image at its
batch size). At that rate model *m* keeps ``demand_m = cores * cost_m / sum(cost)`` cores busy,
and its workers can take at most ``workers_m * threads`` of them. A model whose workers cannot
take its demand holds every closed-loop client, and the other workers sit idle (measured: a
single 1-thread VGG-16-BN worker, ~50 % of the engine time of the five default models, kept a
2-core stack at ~0.62x of the in-process limit; two workers lifted it to ~0.77x, docs/engine.md).

The rule (:func:`plan_workers`)::

    workers_m = clamp(ceil(demand_m / threads + spare), 1, max(1, cores // threads))

``spare`` (default half a worker) is the headroom every model keeps at the limit: a model's
workers are at most ``d / (d + spare)`` busy (d = demand in workers), so no single model's
queue has to run flat out — batching delay, transport and the frontend leave gaps, and a
bottleneck worker never recovers the time it spends waiting. More workers than the cores can
run in parallel would only add model copies (memory), hence the cap. Threads per worker stay
as configured.

Costs come from :func:`measure_costs` (the engine on a random-init model at the archive's
input size, batch size and torch threads; weights do not change the cost) or from a bench's
own in-process reference (``ptxplain bench throughput``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Mapping, Sequence

from ptxplain.errors import ConfigError

__all__ = [
    "DEFAULT_SPARE",
    "Placement",
    "measure_cost_ms",
    "measure_costs",
    "parse_workers",
    "plan_lines",
    "plan_workers",
]

DEFAULT_SPARE = 0.5


@dataclasses.dataclass(frozen=True)
class Placement:
    """One model's planned workers and why."""

    model: str
    cost_ms: float  # per image, at the batch size
    share: float  # of the summed cost
    demand_cores: float  # cores it keeps busy at the limit
    workers: int
    threads: int

    @property
    def busy(self) -> float:
        """How busy its workers are at the limit (1.0 = every one flat out)."""
        return self.demand_cores / (self.workers * self.threads)

    def reason(self) -> str:
        return (
            f"{self.cost_ms:.1f} ms/image = {self.share:.0%} of the cost -> "
            f"{self.demand_cores:.2f} cores at the limit; {self.workers} worker(s) x "
            f"{self.threads} thread(s) {self.busy:.0%} busy"
        )


def parse_workers(text: str) -> int | None:
    """``auto`` -> None (plan them); a count >= 1 -> that count for every model."""
    if text.strip().lower() == "auto":
        return None
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a count, got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"workers must be at least 1, got {count}")
    return count


def _workers_for(demand: float, threads: int, cores: int, spare: float) -> int:
    ceiling = max(1, cores // threads)
    return min(ceiling, max(1, math.ceil(demand / threads + spare)))


def plan_workers(
    costs: Mapping[str, float], cores: int, threads: int = 1, spare: float = DEFAULT_SPARE
) -> list[Placement]:
    """One :class:`Placement` per model (in ``costs`` order) for models served together."""
    if cores < 1 or threads < 1:
        raise ConfigError(f"cores and threads must be >= 1, got {cores} and {threads}")
    if not costs or any(not math.isfinite(c) or c <= 0 for c in costs.values()):
        raise ConfigError(f"every model needs a positive cost, got {dict(costs)}")
    if spare < 0:
        raise ConfigError(f"spare must be >= 0, got {spare}")
    total = sum(costs.values())
    placements = []
    for model, cost in costs.items():
        demand = cores * cost / total
        workers = _workers_for(demand, threads, cores, spare)
        placements.append(Placement(model, cost, cost / total, demand, workers, threads))
    return placements


def plan_lines(placements: Sequence[Placement], cores: int) -> list[str]:
    """What was planned and why, one line per model."""
    width = max(len(p.model) for p in placements)
    head = f"workers planned for {cores} core(s), cost-proportional (handlers/placement.py):"
    return [head, *(f"  {p.model:<{width}}  {p.reason()}" for p in placements)]


# -- measuring costs ---------------------------------------------------------------------------


def measure_cost_ms(
    arch: str, input_size: int, batch_size: int, threads: int, repeats: int = 2
) -> float:
    """The engine's CPU milliseconds per image at ``batch_size`` (best of ``repeats``, after a
    warm-up), on a random-init model at ``input_size`` with ``threads`` torch threads."""
    import torch

    from ptxplain.explain.engine import ExplanationEngine
    from ptxplain.models.registry import get_spec

    spec = get_spec(arch)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        engine = ExplanationEngine(spec.build(input_size).eval(), spec)
        batch = torch.rand(batch_size, 3, input_size, input_size)
        engine.explain(batch)
        best = math.inf
        for _ in range(max(1, repeats)):
            started = time.perf_counter()
            engine.explain(batch)
            best = min(best, time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)
    return best * 1000.0 / batch_size


def measure_costs(
    models: Mapping[str, tuple[str, int]], batch_size: int, threads: int, repeats: int = 2
) -> dict[str, float]:
    """``{model: (architecture, input size)}`` -> ``{model: ms per image}``."""
    return {
        name: measure_cost_ms(arch, size, batch_size, threads, repeats)
        for name, (arch, size) in models.items()
    }
