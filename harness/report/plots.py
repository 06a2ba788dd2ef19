"""The report's figures as base64 PNGs (matplotlib, Agg backend; nothing touches a display)."""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "Tile",
    "gallery_row",
    "image",
    "iou_curves",
    "latency_boxes",
    "metric_vs_axis",
    "pr_plot",
    "reliability_plot",
    "roc_plot",
]

_FAMILY_MARKERS = {"vgg": "s", "resnet": "o", "vit": "^", "densenet": "D", "efficientnet": "P"}


def _legend(ax: Any, **kwargs: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, **kwargs)


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def image(alt: str, png: str) -> str:
    """An inline ``<img>`` of a base64 PNG."""
    import html

    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png}">'


def reliability_plot(curves: Mapping[str, Any]) -> str:
    """Observed positive rate against mean predicted probability per bin, one line a model."""
    figure, ax = plt.subplots(figsize=(4.2, 4.0))
    for name, curve in curves.items():
        points = curve.get("reliability")
        if points:
            ax.plot(points["mean_probability"], points["observed_rate"], marker=".", label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("mean predicted probability (bin)")
    ax.set_ylabel("observed positive rate")
    _legend(ax, loc="upper left")
    return _png(figure)


def pr_plot(curves: Mapping[str, Any]) -> str:
    """Precision against recall, one line a model, the prevalence dotted."""
    figure, ax = plt.subplots(figsize=(4.2, 4.0))
    prevalence = None
    for name, curve in curves.items():
        pr = curve.get("pr_curve")
        if pr:
            ap = curve["average_precision"]
            ax.plot(pr["recall"], pr["precision"], label=f"{name} (AP {ap:.3f})", linewidth=1.2)
            prevalence = curve["prevalence"]
    if prevalence is not None:
        ax.axhline(prevalence, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    _legend(ax, loc="lower left")
    return _png(figure)


def metric_vs_axis(models: Mapping[str, Any], area: str, metric: str, axis: str) -> str:
    """Per-model estimate with its 95% CI against depth / params / FLOPs, one marker a family."""
    figure, ax = plt.subplots(figsize=(4.2, 3.0))
    for name, model in models.items():
        interval = model[area]["metrics"][metric]
        if interval["estimate"] is None:
            continue
        x = float(model[axis])
        low, high = interval["low"], interval["high"]
        yerr = (
            None if low is None else [[interval["estimate"] - low], [high - interval["estimate"]]]
        )
        ax.errorbar(
            x,
            interval["estimate"],
            yerr=yerr,
            fmt=_FAMILY_MARKERS.get(model["family"], "x"),
            capsize=3,
            label=name,
        )
    if axis != "depth":
        ax.set_xscale("log")
    ax.set_xlabel(axis)
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(alpha=0.3)
    _legend(ax, loc="best")
    return _png(figure)


def roc_plot(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]]) -> str:
    """One ROC curve per model: name -> (fpr, tpr, auroc)."""
    figure, ax = plt.subplots(figsize=(4.2, 4.0))
    for name, (fpr, tpr, area) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} ({area:.3f})", linewidth=1.2)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    _legend(ax, loc="lower right")
    return _png(figure)


def iou_curves(models: Mapping[str, Any]) -> str:
    """Mean IoU of the thresholded map against the threshold, per model."""
    figure, ax = plt.subplots(figsize=(4.2, 3.0))
    for name, model in models.items():
        curve = model["localization"]["iou_curve"]
        points = [(float(t), v) for t, v in curve.items() if v is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker=".", label=name)
    ax.set_xlabel("threshold on the normalized map")
    ax.set_ylabel("mean IoU")
    ax.grid(alpha=0.3)
    _legend(ax)
    return _png(figure)


def latency_boxes(samples: Mapping[str, Sequence[float]]) -> str:
    """Client-side latency distributions (ms), one box per model plus the fan-out."""
    names = [n for n, values in samples.items() if len(values)]
    figure, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(names) + 1), 3.0))
    if names:
        ax.boxplot([list(samples[n]) for n in names], showfliers=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("client-side latency (ms)")
    ax.grid(alpha=0.3, axis="y")
    return _png(figure)


@dataclasses.dataclass(frozen=True)
class Tile:
    """One model's tile of a gallery row: its map (None: no map) and caption lines."""

    caption: str
    heat: np.ndarray | None
    flag: str = ""  # "failed", "all-zero map", or "" for an ordinary map


def gallery_row(image: np.ndarray, mask: np.ndarray | None, tiles: Sequence[Tile]) -> str:
    """The original with its mask outlined, then each model's map over it; failed requests
    and all-zero maps are marked in red on their tile."""
    columns = 1 + len(tiles)
    figure, axes = plt.subplots(1, columns, figsize=(2.6 * columns, 3.0))
    axes = np.atleast_1d(axes)
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("image + mask", fontsize=8)
    for ax, tile in zip(axes[1:], tiles, strict=True):
        ax.imshow(image, cmap="gray")
        if tile.heat is not None:
            ax.imshow(tile.heat, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        color = "red" if tile.flag else "black"
        ax.set_title(
            tile.caption + (f"\n[{tile.flag}]" if tile.flag else ""), fontsize=7, color=color
        )
    for ax in axes:
        if mask is not None and mask.any():
            ax.contour(mask, levels=[0.5], colors="lime", linewidths=0.7)
        ax.axis("off")
    return _png(figure)
