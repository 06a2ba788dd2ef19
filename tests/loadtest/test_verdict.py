"""loadtest/verdict.py: limits, shed rows counted apart, the summary."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.scenario import Limits
from loadtest.verdict import Row, judge, render_table, write_summary


def _row(
    name: str, requests: int, failures: int = 0, p95: float = 100.0, kind: str = "grpc"
) -> Row:
    return Row(kind, name, requests, failures, 1.0, p95 / 2, p95, p95 * 1.1, p95 * 1.2)


LIMITS = Limits(max_failure_ratio=0.0, max_p95_ms={"explain all": 500.0}, max_shed_p95_ms=50.0)


def test_a_clean_run_passes() -> None:
    verdict = judge([_row("explain all", 10), _row("list models", 5, p95=9999)], LIMITS)
    assert verdict.passed and verdict.requests == 15 and verdict.failures == 0


def test_shed_answers_are_not_failures() -> None:
    rows = [
        _row("explain all", 10),
        _row("explain all [shed]", 30, p95=5),
        _row("explain one [partly shed]", 4, p95=900),
    ]
    verdict = judge(rows, LIMITS)
    assert verdict.passed and verdict.shed == 34 and verdict.failure_ratio == 0.0


def test_breaches_are_named() -> None:
    rows = [_row("explain all", 10, failures=1, p95=800), _row("explain all [shed]", 3, p95=70)]
    verdict = judge(rows, LIMITS)
    assert not verdict.passed
    text = "\n".join(verdict.breaches)
    assert "failure ratio 0.1000 (1/10)" in text
    assert "explain all: p95 800 ms > 500 ms" in text
    assert "shedding must be prompt" in text


def test_an_empty_run_fails() -> None:
    assert not judge([], LIMITS).passed


def test_table_and_summary(tmp_path: Path) -> None:
    rows = [_row("list models", 2), _row("explain all", 3, kind="http")]
    table = render_table(rows)
    assert table.index("explain all") < table.index("list models")
    summary = write_summary(tmp_path / "s.json", rows, judge(rows, LIMITS), {"users": 2})
    assert json.loads((tmp_path / "s.json").read_text()) == summary
    assert summary["verdict"]["passed"] is True and summary["rows"][0]["type"] == "http"
