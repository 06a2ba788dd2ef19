"""The self-contained report.html of an evaluation run: inline CSS, figures as base64 PNGs,
tables with n and missing counts on every metric, and a gallery of overlays.

The answer in words opens the page (:mod:`harness.metrics.answer`). A phantom run is labelled
SYNTHETIC in the title, a banner, the answer and every section heading. The paper's figures are
labelled with their source (a secondary summary of the paper) wherever they are shown; the
per-model paper columns appear only for real SIIM-ACR data.
"""

from __future__ import annotations

import html
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.dataset import ImageRecord
from harness.metrics.answer import PAPER
from harness.metrics.stats import roc_curve
from harness.metrics.study import LOCALIZATION_SUMMARY, heat_in_original
from harness.report import plots
from harness.report.sections import (
    depth_section,
    latency_section,
    loadtest_section,
    robustness_section,
    table,
)
from harness.report.study_sections import (
    answer_section,
    calibration_section,
    confusion_section,
    learned_section,
    paired_localization_section,
    paper_note,
    probability_section,
    provenance_section,
)
from harness.store import ModelAnswer, ResultsStore

__all__ = ["PAPER_LABEL", "fmt_interval", "render_report"]

TEMPLATE = Path(__file__).with_name("template.html")
PAPER_LABEL = "from a secondary summary of the paper"
PAPER_ACCURACY = PAPER["accuracy"]
PAPER_EHR = {
    "resnet101": PAPER["ehr"]["resnet101"],
    "vgg16": PAPER["ehr"]["vgg16"],
    **dict.fromkeys(("vit_s16", "vit_b16", "vit_l16"), PAPER["ehr"]["vit"]),
}
_CLASSIFICATION = ("accuracy", "balanced_accuracy", "auroc", "sensitivity", "specificity", "f1")


def fmt_interval(interval: dict[str, Any]) -> str:
    if interval["estimate"] is None:
        return "—"
    if interval["low"] is None:
        return f"{interval['estimate']:.3f}"
    return f"{interval['estimate']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def _heading(text: str, synthetic: bool) -> str:
    tag = ' <span class="synthetic">SYNTHETIC</span>' if synthetic else ""
    return f"<h2>{html.escape(text)}{tag}</h2>"


def _show_paper(metrics: dict[str, Any]) -> bool:
    return not metrics["synthetic"] and metrics["dataset"].get("layout") == "siim"


def _classification_section(metrics: dict[str, Any]) -> str:
    paper = _show_paper(metrics)
    headers = ["model", "depth", "params (M)", "GFLOPs", "n", "missing", *_CLASSIFICATION]
    headers += [f"paper accuracy ({PAPER_LABEL})"] if paper else []
    rows = []
    for name, m in metrics["models"].items():
        c = m["classification"]
        row = [
            name,
            m["depth"],
            f"{m['params'] / 1e6:.1f}",
            f"{m['flops'] / 1e9:.2f}",
            c["n"],
            c["missing"],
            *(fmt_interval(c["metrics"][k]) for k in _CLASSIFICATION),
        ]
        rows.append(row + ([PAPER_ACCURACY] if paper else []))
    note = (
        "<p>Decisions at each model's own threshold (the result's <code>positive</code>); "
        "95% percentile bootstrap intervals over test images.</p>"
    )
    return (
        note
        + table(headers, rows)
        + (paper_note() if paper else "")
        + _missing_notes(metrics, "classification")
        + confusion_section(metrics)
    )


def _missing_notes(metrics: dict[str, Any], area: str) -> str:
    items = [
        f"<li><b>{html.escape(name)}</b>: {m[area]['missing']} missing — "
        + "; ".join(f"{html.escape(k)}: {v}" for k, v in m[area]["missing_reasons"].items())
        + "</li>"
        for name, m in metrics["models"].items()
        if m[area]["missing"]
    ]
    return f'<ul class="missing">{"".join(items)}</ul>' if items else ""


def _paired_section(metrics: dict[str, Any]) -> str:
    rows = [
        [
            p["model_a"],
            p["model_b"],
            p["auroc_difference"]["n"],
            fmt_interval(p["auroc_difference"]),
            "yes" if p["ci_excludes_zero"] else "no",
            _delong(p.get("delong") or {}),
        ]
        for p in metrics["paired_auroc"]
    ]
    headers = ["A", "B", "n shared", "AUROC A − B [95% CI]", "CI excludes 0", "DeLong z, p"]
    return table(headers, rows)


def _delong(test: dict[str, Any]) -> str:
    if test.get("p_value") is None:
        return f"— ({test.get('method', 'not run')})"
    method = "" if test["method"] == "delong" else f" ({test['method']})"
    return f"z = {test['z']:.2f}, p = {test['p_value']:.3g}{method}"


def _localization_section(metrics: dict[str, Any]) -> str:
    paper = _show_paper(metrics)
    headers = ["model", "n", "missing", *LOCALIZATION_SUMMARY]
    headers += [f"paper EHR ({PAPER_LABEL})"] if paper else []
    rows = []
    for name, m in metrics["models"].items():
        loc = m["localization"]
        row = [
            name,
            loc["n"],
            loc["missing"],
            *(fmt_interval(loc["metrics"][k]) for k in LOCALIZATION_SUMMARY),
        ]
        rows.append(row + ([PAPER_EHR.get(m["architecture"], "—")] if paper else []))
    bins = metrics["size_bins"]
    edges = ", ".join("—" if e is None else f"{e:.4f}" for e in bins["edges"])
    size_rows = [
        [
            name,
            b,
            m["localization"]["by_size"][b]["n"],
            *(
                fmt_interval(m["localization"]["by_size"][b]["metrics"][k])
                for k in ("effective_heat_ratio", "pointing_game", "energy_pointing_game")
            ),
        ]
        for name, m in metrics["models"].items()
        for b in bins["names"]
    ]
    return (
        f"<p>{metrics['positives_with_mask']} positive test images with a mask "
        f"({metrics['positives_without_mask']} positives without one are left out).</p>"
        + table(headers, rows)
        + (paper_note() if paper else "")
        + _missing_notes(metrics, "localization")
        + f"<h3>By lesion size</h3><p>{html.escape(bins['basis'])}; edges: {edges}.</p>"
        + table(
            ["model", "size", "n", "effective heat ratio", "pointing game", "energy PG"], size_rows
        )
        + f'<img alt="IoU against threshold" src="data:image/png;base64,{plots.iou_curves(metrics["models"])}">'
    )


def _roc_image(metrics: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    curves = {}
    for name, m in metrics["models"].items():
        answered = [r for r in rows if r["model"] == name and r["positive_probability"] is not None]
        labels = np.array([r["label"] for r in answered], dtype=bool)
        if labels.size and 0 < labels.sum() < labels.size:
            fpr, tpr = roc_curve(labels, np.array([r["positive_probability"] for r in answered]))
            curves[name] = (fpr, tpr, m["classification"]["metrics"]["auroc"]["estimate"] or 0.0)
    return f'<img alt="ROC curves" src="data:image/png;base64,{plots.roc_plot(curves)}">'


def _gallery_cases(
    metrics: dict[str, Any], rows: Sequence[dict[str, Any]]
) -> list[tuple[str, str]]:
    """(image id, why shown): each model's worst miss, then the best-localized case."""
    cases: dict[str, str] = {}
    for name in metrics["models"]:
        scored = [r for r in rows if r["model"] == name and r["effective_heat_ratio"] is not None]
        misses = [r for r in scored if r["positive"] == 0]
        if misses:
            worst = min(misses, key=lambda r: r["positive_probability"])
            cases.setdefault(
                worst["image_id"],
                f"{name}: worst missed positive (p = {worst['positive_probability']:.3f})",
            )
        elif scored:
            worst = min(scored, key=lambda r: r["effective_heat_ratio"])
            cases.setdefault(worst["image_id"], f"{name}: lowest effective heat ratio")
    scored = [r for r in rows if r["effective_heat_ratio"] is not None]
    if scored:
        best = max(scored, key=lambda r: r["effective_heat_ratio"])
        cases.setdefault(best["image_id"], f"{best['model']}: highest effective heat ratio")
    return list(cases.items())[:12]


def _outcome(answer: ModelAnswer, label: int) -> str:
    if answer.positive:
        return "true positive" if label else "false positive"
    return "false negative" if label else "true negative"


def _tile(
    answer: ModelAnswer | None, name: str, native: np.ndarray | None, label: int
) -> plots.Tile:
    if answer is None or not answer.ok:
        why = "no answer" if answer is None else f"failed (code {answer.code})"
        return plots.Tile(name, None, why)
    caption = (
        f"{name}\np = {answer.positive_probability:.3f} (t = {answer.threshold:.3f})\n"
        f"{_outcome(answer, label)}"
    )
    if native is None:
        return plots.Tile(caption, None, "no map")
    raw = heat_in_original(answer, native)
    span = float(raw.max() - raw.min())
    if span <= 0:
        return plots.Tile(caption, None, "all-zero map" if not raw.any() else "constant map")
    return plots.Tile(caption, (raw - raw.min()) / span)


def _gallery_section(
    metrics: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    records: Sequence[ImageRecord],
    store: ResultsStore,
) -> str:
    by_id = {r.image_id: r for r in records}
    results = store.load()
    blocks = []
    for image_id, why in _gallery_cases(metrics, rows):
        record, result = by_id[image_id], results.get(image_id)
        maps = store.load_maps(result) if result is not None else {}
        tiles = [
            _tile(
                result.answers.get(name) if result is not None else None,
                name,
                maps.get(name),
                int(record.label),
            )
            for name in metrics["models"]
        ]
        png = plots.gallery_row(record.load_pixels(), record.load_mask(), tiles)
        blocks.append(
            f'<figure><img alt="overlays of {html.escape(image_id)}" '
            f'src="data:image/png;base64,{png}"><figcaption>{html.escape(image_id)} — '
            f"{html.escape(why)}</figcaption></figure>"
        )
    return "".join(blocks) or "<p>No positive image with a map to show.</p>"


def render_report(
    metrics: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    records: Sequence[ImageRecord],
    store: ResultsStore,
    path: Path,
    loadtest_dir: Path | None,
) -> Path:
    """Write report.html for one run's metrics."""
    synthetic = metrics["synthetic"]
    sections = [
        (_heading("Models and their provenance", synthetic), provenance_section(metrics)),
        (_heading("Classification", synthetic), _classification_section(metrics)),
        (
            _heading("Probability calibration and PR curves", synthetic),
            probability_section(metrics),
        ),
        (_heading("ROC curves", synthetic), _roc_image(metrics, rows)),
        (_heading("Paired AUROC comparisons", synthetic), _paired_section(metrics)),
        (
            _heading("Localization (Grad-CAM vs lesion masks), raw", synthetic),
            _localization_section(metrics),
        ),
        (
            _heading("Calibrated localization: floors and ceilings", synthetic),
            calibration_section(metrics),
        ),
        (
            _heading("Image-level paired comparisons", synthetic),
            paired_localization_section(metrics),
        ),
        (
            _heading("Depth, parameters and FLOPs (learned models only)", synthetic),
            learned_section(metrics) + depth_section(metrics),
        ),
        (_heading("Robustness of explanations", synthetic), robustness_section(metrics)),
        (_heading("Latency", synthetic), latency_section(metrics, rows)),
        (_heading("Load test", synthetic), loadtest_section(loadtest_dir)),
        (_heading("Gallery", synthetic), _gallery_section(metrics, rows, records, store)),
    ]
    body = "\n".join(f"<section>{h}{content}</section>" for h, content in sections)
    coverage = metrics["coverage"]
    warning = (
        ""
        if coverage["complete"]
        else (
            '<p class="warning">Incomplete run: missing answers per model — '
            + ", ".join(f"{html.escape(k)}: {v}" for k, v in coverage["missing_by_model"].items())
            + " of "
            + str(coverage["test_images"])
            + " test images. Every table gives n and missing.</p>"
        )
    )
    untrained = [n for n, m in metrics["models"].items() if not m.get("trained", True)]
    if untrained:
        warning += (
            '<p class="warning">Random-init (untrained) weights: '
            + html.escape(", ".join(untrained))
            + " — their figures say nothing about the architectures.</p>"
        )
    banner = (
        (
            '<p class="synthetic-banner">SYNTHETIC — phantom images, not patients; no figure '
            "here says anything about real radiographs.</p>"
        )
        if synthetic
        else ""
    )
    page = string.Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        title=("SYNTHETIC — " if synthetic else "") + "ptxplain evaluation report",
        banner=banner,
        warning=warning,
        answer=_heading("Answer", synthetic) + answer_section(metrics),
        summary=_summary(metrics),
        body=body,
    )
    path.write_text(page, encoding="utf-8")
    return path


def _summary(metrics: dict[str, Any]) -> str:
    d, run = metrics["dataset"], metrics["run"]
    items = [
        ("data", d["root"]),
        ("layout", d["layout"]),
        ("test images", f"{d['test_images']} ({d['test_positive']} positive)"),
        ("models", ", ".join(metrics["models"])),
        ("gateway", run["gateway"] or "(report only)"),
        ("bootstrap", f"{run['n_boot']} resamples, seed {run['seed']}"),
    ]
    return table(["", ""], [[k, v] for k, v in items])
