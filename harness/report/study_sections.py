"""The report's sections that answer the study's question: the answer box, calibrated
localization (floors and ceilings at each model's grid), image-level paired comparisons, the
learned / excluded models, probability calibration and PR curves, confusion matrices, and the
provenance of every evaluated model."""

from __future__ import annotations

import html
from typing import Any

from harness.metrics.answer import (
    PAPER,
    PAPER_SOURCE,
    answer_lines,
    fmt,
    held_out_check_line,
    trained_on,
)
from harness.metrics.baselines import CALIBRATED_METRICS, MIN_RANGE, REFERENCES
from harness.report import plots
from harness.report.sections import table

__all__ = [
    "answer_section",
    "calibration_section",
    "confusion_section",
    "learned_section",
    "paired_localization_section",
    "paper_note",
    "probability_section",
    "provenance_section",
]


def paper_note() -> str:
    """The paper's figures with their source, wherever they are shown."""
    return (
        f'<p class="paper">Paper figures — {html.escape(PAPER_SOURCE)}: accuracy '
        f"{html.escape(PAPER['accuracy'])}; EHR ResNet-101 {PAPER['ehr']['resnet101']}, "
        f"VGG-16 {PAPER['ehr']['vgg16']}, ViTs {html.escape(PAPER['ehr']['vit'])}.</p>"
    )


def answer_section(metrics: dict[str, Any]) -> str:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in answer_lines(metrics))
    return (
        f'<div class="answer"><ul>{items}</ul><p><small>Verdict rule: every larger-minus-'
        "smaller pair's 95% paired bootstrap interval above 0 (or below), else no consistent "
        "change; only models whose test AUROC interval lies above 0.5 take part. "
        "Definitions: docs/metrics.md.</small></p></div>"
    )


def _ref(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def calibration_section(metrics: dict[str, Any]) -> str:
    rows = []
    for name, m in metrics["models"].items():
        loc = m["localization"]
        for metric in CALIBRATED_METRICS:
            c = loc["calibration"][metric]
            refs = c["references"]
            rows.append(
                [
                    name,
                    ", ".join(loc["grids"]) or "—",
                    metric,
                    c["raw"]["n"],
                    fmt(c["raw"]),
                    *(_ref(refs[r]) for r in REFERENCES),
                    fmt(c["calibrated"]) if c["resolvable"] else "not resolvable at this grid",
                ]
            )
    headers = ["model", "grid", "metric", "n", "raw [95% CI]", *REFERENCES, "calibrated [95% CI]"]
    return (
        "<p>Floors and ceilings on the same masks, at each model's own CAM grid and "
        "upsampling: <b>uniform</b> (the same heat everywhere: the floor), <b>random</b> "
        "(i.i.d. values on the grid), <b>ideal</b> (the mask area-pooled to the grid, upsampled "
        "like a served map: the ceiling at that grid), <b>mask</b> (the mask itself). "
        "Calibrated = (raw − uniform) / (ideal − uniform), a ratio of means with a bootstrap "
        f"interval over images; below a span of {MIN_RANGE} the grid cannot resolve the "
        "metric. The grid pointing game asks whether the hottest grid cell holds lesion "
        "pixels; the pixel pointing game is degenerate on coarse maps (flat maxima).</p>"
        + table(headers, rows)
    )


def paired_localization_section(metrics: dict[str, Any]) -> str:
    entries = metrics["paired_localization"]
    if not entries:
        return "<p>No pair of learned models to compare (see the list of excluded models).</p>"
    rows = [
        [
            e["scope"],
            " + ".join(e["a"]),
            " + ".join(e["b"]),
            e["metric"],
            e["n"],
            fmt(e["difference"]),
            "yes" if e["ci_excludes_zero"] else "no",
        ]
        for e in entries
    ]
    return (
        "<p>The same positives (those every model of the pair answered), calibrated score of A "
        "minus that of B, 95% paired bootstrap interval over images. Within a family A is the "
        "deeper (then larger) model; CNNs vs ViTs averages each group's models.</p>"
        + table(["scope", "A", "B", "metric", "n images", "A − B [95% CI]", "CI excludes 0"], rows)
    )


def learned_section(metrics: dict[str, Any]) -> str:
    learned = metrics["learned"]
    items = "".join(
        f"<li><b>{html.escape(n)}</b>: {html.escape(why)}</li>"
        for n, why in learned["excluded"].items()
    )
    return (
        f"<p>Models that learned (test AUROC interval above 0.5): "
        f"{html.escape(', '.join(learned['models']) or 'none')}.</p>"
        + (
            f'<p>Excluded from comparisons and correlations:</p><ul class="missing">{items}</ul>'
            if items
            else ""
        )
    )


def confusion_section(metrics: dict[str, Any]) -> str:
    rows = []
    for name, m in metrics["models"].items():
        c = m["classification"]
        t = ", ".join(f"{x:.4f}" for x in c["thresholds"]) or "—"
        k = c["confusion"]
        rows.append([name, t, k["tp"], k["fn"], k["fp"], k["tn"]])
    return "<h3>Confusion matrix at each model's threshold</h3>" + table(
        ["model", "threshold", "TP", "FN", "FP", "TN"], rows
    )


def probability_section(metrics: dict[str, Any]) -> str:
    curves = {n: m["classification"]["curves"] for n, m in metrics["models"].items()}
    rows = [
        [
            n,
            fmt(m["classification"]["metrics"]["brier"]),
            fmt(m["classification"]["metrics"]["ece"]),
            "—"
            if curves[n]["average_precision"] is None
            else f"{curves[n]['average_precision']:.3f}",
        ]
        for n, m in metrics["models"].items()
    ]
    return (
        "<p>Brier score (mean squared error of the probability), expected calibration error "
        "(10 equal-width bins), average precision; 95% bootstrap intervals.</p>"
        + table(["model", "Brier", "ECE", "average precision"], rows)
        + plots.image("reliability diagram", plots.reliability_plot(curves))
        + plots.image("precision-recall curves", plots.pr_plot(curves))
    )


def provenance_section(metrics: dict[str, Any]) -> str:
    fingerprint = metrics["run"].get("train_fingerprint")
    rows = []
    for name, m in metrics["models"].items():
        provenance = m.get("provenance") or {}
        where, held_out = trained_on(m, fingerprint)
        rows.append(
            [
                name,
                m["architecture"],
                "yes" if m.get("trained") else "NO (random init)",
                where if held_out else f"{where} — test images not proven held out",
                held_out_check_line(m),
                ", ".join(m["input_sizes"]) if m.get("input_sizes") else "—",
                ", ".join(m["localization"]["grids"]) or "—",
                provenance.get("weights_source", "unknown"),
                provenance.get("recipe", "not served"),
            ]
        )
    headers = ["model", "architecture", "trained", "trained on", "held out", "input", "CAM grid"]
    return (
        "<p>From the gateway's model list; a model trained on this data set's train split "
        "(matching data + split fingerprint) never saw the test images. Held out: each "
        "model's handler compares every image's pixel digest with those of its training and "
        "validation images (an image it was trained on stops the evaluation, or with "
        "--allow-seen is left out of that model's metrics).</p>"
        + table([*headers, "weights source", "recipe"], rows)
    )
