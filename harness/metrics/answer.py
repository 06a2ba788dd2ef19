"""The study's answer in words, from metrics.json: per family, does localization improve with
depth; CNNs versus ViTs; does accuracy follow depth. Each sentence carries its figure and
interval, or says "not testable" and why. The paper's figures come with their source, and the
uniform-map EHR (the chance level) beside them.

Verdicts on calibrated EHR (docs/metrics.md): "improves" when every larger-minus-smaller pair of
the family has an interval above 0, "worsens" when every one lies below, otherwise "no
consistent change". The same rule reads the paired AUROC differences for accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.metrics.comparisons import VIT_FAMILY

__all__ = [
    "PAPER",
    "PAPER_SOURCE",
    "SIIM_CHANCE",
    "answer_lines",
    "fmt",
    "held_out_check_line",
    "trained_on",
]

PAPER_SOURCE = (
    "Qiu, Rivaz, Xiao, MLMI 2023, as given by a secondary summary of the paper "
    "(the full text is not available here; not verified from its tables)"
)
PAPER: dict[str, Any] = {
    "accuracy": "83.2–88.2 % (range over the nine models)",
    "ehr": {"resnet101": "0.0319", "vgg16": "0.0243", "vit": "0.0145–0.0171 (ViT range)"},
}
SIIM_CHANCE = (
    "on 600 real SIIM-ACR masks at 224 px, a uniform map scores EHR 0.013 and an ideal 7×7 map "
    "0.10 (measured with this harness), so the paper's EHR figures sit 1.1–2.4× above chance"
)
_METRIC = "effective_heat_ratio"


def fmt(interval: dict[str, Any] | None, digits: int = 3) -> str:
    """``estimate [low, high]``; "—" for a missing estimate."""
    if not interval or interval.get("estimate") is None:
        return "—"
    if interval.get("low") is None:
        return f"{interval['estimate']:.{digits}f}"
    e, lo, hi = interval["estimate"], interval["low"], interval["high"]
    return f"{e:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _verdict(entries: Sequence[dict[str, Any]], up: str, down: str, flat: str) -> str:
    lows = [e["low"] for e in entries]
    highs = [e["high"] for e in entries]
    if lows and all(lo is not None and lo > 0 for lo in lows):
        return up
    if highs and all(hi is not None and hi < 0 for hi in highs):
        return down
    return flat


def _family_members(metrics: dict[str, Any], family: str) -> list[str]:
    return [n for n, m in metrics["models"].items() if m["family"] == family]


def _why_untestable(metrics: dict[str, Any], members: Sequence[str]) -> str:
    learned = [m for m in members if m in metrics["learned"]["models"]]
    excluded = [m for m in members if m in metrics["learned"]["excluded"]]
    why = f"{len(learned)} learned model{'s' if len(learned) != 1 else ''}"
    if excluded:
        why += "; excluded: " + "; ".join(
            f"{m} ({metrics['learned']['excluded'][m]})" for m in excluded
        )
    return why


def _pair_text(entry: dict[str, Any]) -> str:
    return f"{'+'.join(entry['a'])} − {'+'.join(entry['b'])} = {fmt(entry['difference'])} (n = {entry['n']})"


def _localization_sentence(metrics: dict[str, Any], family: str) -> str:
    entries = [
        e for e in metrics["paired_localization"] if e["scope"] == family and e["metric"] == _METRIC
    ]
    members = _family_members(metrics, family)
    if not entries:
        return (
            f"{family}: does localization improve with depth? not testable — "
            f"{_why_untestable(metrics, members)} (two are needed)."
        )
    verdict = _verdict(
        [e["difference"] for e in entries],
        "improves with depth",
        "worsens with depth",
        "no consistent change with depth",
    )
    pairs = "; ".join(_pair_text(e) for e in entries)
    return f"{family}: localization (calibrated EHR) {verdict}: {pairs}."


def _cnn_vit_sentence(metrics: dict[str, Any]) -> str:
    entries = [e for e in metrics["paired_localization"] if e["scope"] == "cnn_vs_vit"]
    if not entries:
        missing = [
            kind
            for kind, is_vit in (("CNN", False), ("ViT", True))
            if not any(
                (metrics["models"][n]["family"] == VIT_FAMILY) == is_vit
                for n in metrics["learned"]["models"]
            )
        ]
        return (
            f"CNNs versus ViTs: not testable — no learned {' and no learned '.join(missing)}"
            " (excluded models are listed below)."
        )
    parts = []
    for entry in entries:
        d = entry["difference"]
        word = (
            "CNNs localize better"
            if d["low"] is not None and d["low"] > 0
            else "ViTs localize better"
            if d["high"] is not None and d["high"] < 0
            else "no difference shown"
        )
        parts.append(f"{entry['metric']} (calibrated): {word}, {_pair_text(entry)}")
    return "CNNs versus ViTs: " + "; ".join(parts) + "."


def _negated(interval: dict[str, Any]) -> dict[str, Any]:
    def neg(v: float | None) -> float | None:
        return None if v is None else -v

    return {
        **interval,
        "estimate": neg(interval["estimate"]),
        "low": neg(interval["high"]),
        "high": neg(interval["low"]),
    }


def _auroc_pairs(metrics: dict[str, Any], family: str) -> list[dict[str, Any]]:
    """Paired AUROC entries of one family's learned models, oriented larger minus smaller."""
    models = metrics["models"]
    learned = {n for n in metrics["learned"]["models"] if models[n]["family"] == family}
    out = []
    for p in metrics["paired_auroc"]:
        a, b, d = p["model_a"], p["model_b"], p["auroc_difference"]
        if a not in learned or b not in learned:
            continue
        if (models[a]["depth"], models[a]["params"]) < (models[b]["depth"], models[b]["params"]):
            a, b, d = b, a, _negated(d)
        out.append({"a": a, "b": b, "difference": d, "delong": p.get("delong", {})})
    return out


def _accuracy_sentence(metrics: dict[str, Any], family: str) -> str:
    pairs = _auroc_pairs(metrics, family)
    if not pairs:
        members = _family_members(metrics, family)
        return (
            f"{family}: does accuracy follow depth? not testable — "
            f"{_why_untestable(metrics, members)} (two are needed)."
        )
    verdict = _verdict(
        [p["difference"] for p in pairs],
        "rises with depth",
        "falls with depth",
        "no consistent change with depth",
    )
    texts = []
    for p in pairs:
        delong = p["delong"]
        pv = delong.get("p_value")
        texts.append(
            f"AUROC {p['a']} − {p['b']} = {fmt(p['difference'])}"
            + (f", DeLong p = {pv:.3g}" if pv is not None else "")
        )
    return f"{family}: test AUROC {verdict}: " + "; ".join(texts) + "."


def _chance_line(metrics: dict[str, Any]) -> str:
    floors = [
        m["localization"]["calibration"][_METRIC]["references"]["uniform"]
        for m in metrics["models"].values()
        if m["localization"]["n"]
    ]
    here = f"{floors[0]:.4f}" if floors and floors[0] is not None else "—"
    return f"Chance level: a uniform map scores EHR {here} on this run's masks; {SIIM_CHANCE}."


def trained_on(model: dict[str, Any], train_fingerprint: str | None) -> tuple[str, bool]:
    """(what the model was trained on, whether that proves the test images were held out)."""
    provenance = model.get("provenance") or {}
    seen = provenance.get("data_fingerprint")
    label = provenance.get("trained_on", "")
    if not model.get("trained", True):
        return "nothing (random-init weights)", True
    if not seen:
        return "unknown (not in the served metadata)", False
    if train_fingerprint and seen == train_fingerprint:
        return "this data set's train split" + (f" ({label})" if label else ""), True
    return f"other data: {label or 'unnamed'} (fingerprint {str(seen)[:12]}…)", False


def held_out_check_line(model: dict[str, Any]) -> str:
    """The per-image held-out check of one model (as in metrics.json's models), in words."""
    block = model.get("held_out")
    if not model.get("trained", True):
        return "not needed (random-init weights)"
    if not block or not block.get("checked"):
        return "not checked (archive without training digests)"
    line = (
        f"per-image check: {block['seen']} of {block['evaluated']} evaluated images seen in "
        "training"
    )
    return line + (" — excluded from its metrics (--allow-seen)" if block.get("excluded") else "")


def _seen_line(metrics: dict[str, Any]) -> str | None:
    excluded = {
        name: m["held_out"]["seen"]
        for name, m in metrics["models"].items()
        if (m.get("held_out") or {}).get("excluded")
    }
    if not excluded:
        return None
    listed = ", ".join(f"{name} {n}" for name, n in excluded.items())
    return f"Left out of the metrics as images the model was trained on (--allow-seen): {listed}."


def _provenance_line(metrics: dict[str, Any]) -> str | None:
    fingerprint = metrics.get("run", {}).get("train_fingerprint")
    by_reason: dict[str, list[str]] = {}
    for name, model in metrics["models"].items():
        where, held_out = trained_on(model, fingerprint)
        if not held_out:
            by_reason.setdefault(where, []).append(name)
    if not by_reason:
        return None
    groups = "; ".join(f"{', '.join(names)}: {where}" for where, names in by_reason.items())
    return f"Provenance — test images not proven held out ({groups})."


def answer_lines(metrics: dict[str, Any]) -> list[str]:
    """The answer box, one sentence a line (SYNTHETIC first when the data are a phantom)."""
    families = sorted({m["family"] for m in metrics["models"].values()})
    lines = []
    if metrics.get("synthetic"):
        lines.append("SYNTHETIC — phantom images, not patients: nothing here is about radiographs.")
    lines += [_localization_sentence(metrics, f) for f in families]
    lines.append(_cnn_vit_sentence(metrics))
    lines += [_accuracy_sentence(metrics, f) for f in families]
    excluded = metrics["learned"]["excluded"]
    if excluded:
        lines.append(
            "Excluded from every comparison: "
            + "; ".join(f"{name} — {why}" for name, why in excluded.items())
            + "."
        )
    if (provenance := _provenance_line(metrics)) is not None:
        lines.append(provenance)
    if (seen := _seen_line(metrics)) is not None:
        lines.append(seen)
    lines.append(_chance_line(metrics))
    lines.append(
        f"Paper ({PAPER_SOURCE}): accuracy {PAPER['accuracy']}; EHR ResNet-101 "
        f"{PAPER['ehr']['resnet101']}, VGG-16 {PAPER['ehr']['vgg16']}, ViTs {PAPER['ehr']['vit']}."
    )
    return lines
