"""A run's verdict: per-row rates and percentiles, the limits it breached, the summary JSON.

Rows are Locust's statistics entries (one per request type and name), copied into plain
:class:`Row` objects by the locustfile so that this module stays free of Locust. Shed rows
(``"<task> [shed]"``, ``"<task> [partly shed]"``) are counted apart: they neither count as
failures nor enter the failure ratio's denominator, and the p95 limit of a task applies to its
plain row (answers where every model was served). Shed rows have their own p95 limit: shedding
must be prompt.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.scenario import TASKS, Limits

__all__ = ["Row", "Verdict", "judge", "render_table", "write_summary"]

_SHED_SUFFIXES = (" [shed]", " [partly shed]")


@dataclasses.dataclass(frozen=True)
class Row:
    """One request type + name: counts, rate and response-time percentiles (milliseconds)."""

    type: str
    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @property
    def shed(self) -> bool:
        return self.name.endswith(_SHED_SUFFIXES)

    @property
    def task(self) -> str:
        for suffix in _SHED_SUFFIXES:
            if self.name.endswith(suffix):
                return self.name[: -len(suffix)]
        return self.name


@dataclasses.dataclass(frozen=True)
class Verdict:
    passed: bool
    breaches: tuple[str, ...]
    requests: int
    failures: int
    shed: int
    failure_ratio: float


def _p95_breaches(rows: Sequence[Row], limits: Limits) -> list[str]:
    breaches = []
    for row in rows:
        if row.shed or row.requests == 0:
            continue
        limit = limits.max_p95_ms.get(row.task)
        if limit is not None and row.p95_ms > limit:
            breaches.append(f"{row.type} {row.name}: p95 {row.p95_ms:.0f} ms > {limit:.0f} ms")
    return breaches


def _shed_breaches(rows: Sequence[Row], limits: Limits) -> list[str]:
    limit = limits.max_shed_p95_ms
    if limit is None:
        return []
    return [
        f"{row.type} {row.name}: p95 {row.p95_ms:.0f} ms > {limit:.0f} ms (shedding must be prompt)"
        for row in rows
        if row.name.endswith(" [shed]") and row.requests and row.p95_ms > limit
    ]


def judge(rows: Sequence[Row], limits: Limits) -> Verdict:
    """Compare a run's rows with the scenario's limits."""
    answered = [row for row in rows if not row.shed]
    requests = sum(row.requests for row in answered)
    failures = sum(row.failures for row in rows)
    shed = sum(row.requests for row in rows if row.shed)
    ratio = failures / requests if requests else 0.0
    breaches = []
    if requests + shed < limits.min_requests:
        breaches.append(f"only {requests + shed} request(s), fewer than {limits.min_requests}")
    if ratio > limits.max_failure_ratio:
        breaches.append(
            f"failure ratio {ratio:.4f} ({failures}/{requests}) > {limits.max_failure_ratio}"
        )
    breaches += _p95_breaches(rows, limits) + _shed_breaches(rows, limits)
    return Verdict(not breaches, tuple(breaches), requests, failures, shed, ratio)


def _order(row: Row) -> tuple[int, str, str]:
    rank = TASKS.index(row.task) if row.task in TASKS else len(TASKS)
    return (rank, row.name, row.type)


def render_table(rows: Sequence[Row]) -> str:
    """A fixed-width table: type, name, requests, failures, req/s, p50/p95/p99/max."""
    header = (
        f"{'type':<6} {'name':<26} {'requests':>9} {'failures':>9} {'req/s':>7} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in sorted(rows, key=_order):
        lines.append(
            f"{r.type:<6} {r.name:<26} {r.requests:>9} {r.failures:>9} {r.rps:>7.2f} "
            f"{r.p50_ms:>8.0f} {r.p95_ms:>8.0f} {r.p99_ms:>8.0f} {r.max_ms:>8.0f}"
        )
    return "\n".join(lines)


def write_summary(
    path: Path, rows: Sequence[Row], verdict: Verdict, run: dict[str, Any]
) -> dict[str, Any]:
    """Write (and return) the summary JSON: the run's settings, rows and verdict."""
    summary = {
        "run": run,
        "rows": [dataclasses.asdict(r) for r in sorted(rows, key=_order)],
        "verdict": {**dataclasses.asdict(verdict), "breaches": list(verdict.breaches)},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
