"""Sections of report.html that read straight from metrics.json (depth analysis, robustness,
latency) or from files beside it (the latest Locust load test)."""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.report import plots

__all__ = ["depth_section", "latency_section", "loadtest_section", "robustness_section", "table"]

_LOCUST_COLUMNS = (
    "Type",
    "Name",
    "Request Count",
    "Failure Count",
    "Median Response Time",
    "95%",
    "99%",
    "Requests/s",
    "Failures/s",
)


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(alt: str, png: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png}">'


def depth_section(metrics: dict[str, Any]) -> str:
    models = metrics["models"]
    figures = "".join(
        _img(f"{metric} against {axis}", plots.metric_vs_axis(models, area, metric, axis))
        for area, metric in (
            ("classification", "accuracy"),
            ("classification", "auroc"),
            ("localization", "effective_heat_ratio"),
            ("localization", "pointing_game"),
        )
        for axis in ("depth", "params")
    )
    rows = [
        [
            r["metric"],
            r["axis"],
            r["scope"],
            r["n"],
            r["rho"],
            r["p_value"],
            r["method"],
            "yes" if r["significant"] else "no",
            r["note"],
        ]
        for r in metrics["depth_analysis"]
    ]
    note = (
        "<p>Spearman rank correlation of each model-level estimate with depth, parameters "
        "and FLOPs, over all models and within each family. With fewer than 4 models a "
        "correlation is <b>not testable</b>; with 4 no ordering reaches p &lt; 0.05 "
        "(exact floor 2/4! = 0.083). p-values are exact permutation p-values up to 9 models "
        "and are not corrected for the number of rows.</p>"
    )
    headers = ["metric", "against", "scope", "n models", "rho", "p", "p method", "p < 0.05", "note"]
    return note + figures + table(headers, rows)


def robustness_section(metrics: dict[str, Any]) -> str:
    block = metrics.get("robustness")
    if not block:
        return (
            "<p>Not run in this evaluation (<code>--robustness-images 0</code>); see "
            "docs/evaluate.md.</p>"
        )
    rows = [
        [m, p, s["n"], s["spearman_mean"], s["ssim_mean"]]
        for m, per in block["stability"].items()
        for p, s in per.items()
    ]
    parts = [
        f"<p>{html.escape(block.get('note', ''))}</p>",
        "<h3>Stability under small perturbations</h3>",
        table(["model", "perturbation", "n", "Spearman (mean)", "SSIM (mean)"], rows),
    ]
    agreement = block.get("agreement")
    if agreement:
        names = agreement["models"]
        parts += [
            "<h3>Agreement between architectures (mean Spearman of maps)</h3>",
            table(
                ["", *names], [[a, *row] for a, row in zip(names, agreement["matrix"], strict=True)]
            ),
        ]
    randomization = block.get("randomization")
    if randomization:
        parts += [
            "<h3>Model-randomization sanity check</h3>",
            table(
                ["model", "n", "Spearman trained vs randomized", "SSIM", "passes"],
                [
                    [m, r["n"], r["spearman_mean"], r["ssim_mean"], "yes" if r["passes"] else "NO"]
                    for m, r in randomization.items()
                ],
            ),
        ]
    return "".join(parts)


def _pct(summary: dict[str, Any]) -> list[Any]:
    return [summary["n"], summary["p50"], summary["p95"], summary["p99"]]


def latency_section(metrics: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    latency = metrics["latency"]
    table_rows = [["fan-out (all models)", *_pct(latency["fan_out_client_ms"])]]
    stage_rows = []
    for name, m in latency["models"].items():
        table_rows.append([name, *_pct(m["client_ms"])])
        stage_rows.append([name, *(m["stages"][s]["p50"] for s in m["stages"])])
    stage_names = (
        list(next(iter(latency["models"].values()))["stages"]) if latency["models"] else []
    )
    samples = {
        name: [r["client_ms"] for r in rows if r["model"] == name and r["client_ms"] is not None]
        for name in latency["models"]
    }
    throughput = latency["throughput_images_per_s"]
    return (
        "<p>Client-side: request sent → that model's result received (fan-out: → last result).</p>"
        + table(["", "n", "p50 ms", "p95 ms", "p99 ms"], table_rows)
        + "<h3>Server and gateway stages (p50 ms)</h3>"
        + table(["model", *stage_names], stage_rows)
        + f"<p>Throughput: {_cell(throughput)} images/s in this invocation; "
        + f"{_cell(latency['throughput_over_span_images_per_s'])} images/s over the stored span. "
        + f"{html.escape(latency['note'])}.</p>"
        + _img("client-side latency", plots.latency_boxes(samples))
    )


def _latest_stats(folder: Path) -> Path | None:
    found = (
        sorted(folder.glob("*_stats.csv"), key=lambda p: p.stat().st_mtime)
        if folder.is_dir()
        else []
    )
    return found[-1] if found else None


def loadtest_section(folder: Path | None) -> str:
    latest = _latest_stats(folder) if folder is not None else None
    if latest is None:
        return f"<p>No load-test results ({html.escape(str(folder))}/*_stats.csv not found).</p>"
    with latest.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = [c for c in _LOCUST_COLUMNS if rows and c in rows[0]]
    return f"<p>Latest Locust results: <code>{html.escape(str(latest))}</code>.</p>" + table(
        columns, [[r.get(c, "") for c in columns] for r in rows]
    )
