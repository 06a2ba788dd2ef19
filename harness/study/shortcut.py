"""A study with a known answer: can the harness detect a shortcut planted on purpose?

1. A *correlated* phantom: a chest-drain-like tube marks ``drain_share`` of the positives and no
   negative. Models train on its train split (its val split picks the threshold).
2. A *decorrelated* phantom (another seed, other patients): the drain sits on
   ``test_drain_share`` of the positives and of the negatives alike, so it says nothing.
3. Each model is run in-process (the serving engine: letterbox, forward, Grad-CAM) on the
   correlated test split and on the decorrelated set. Reported: accuracy and AUROC on both, the
   drop; the positive rate of drained and undrained negatives; and where the heat goes — the
   share of the map's heat on the drain and on the lesion, beside each region's area share
   (the uniform map's score).

A model *learned* when its correlated-test AUROC interval lies above 0.5 (a model that did not
learn even with the shortcut has nothing to detect, and the answer says so). For a model that
learned, a shortcut is *detected* when the accuracy drop's interval lies above 0 and drained negatives
are called positive more often than undrained ones (interval of the difference above 0), or
the heat on the drain exceeds its area share with an interval above 0. docs/evaluate.md
("Shortcut study") documents the options and outputs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.metrics.localization import energy_pointing_game, normalize_map
from harness.metrics.stats import (
    Interval,
    auroc,
    bootstrap_indices,
    bootstrap_interval,
    bootstrap_mean,
)
from ptxplain.errors import InvalidOptionError

__all__ = ["ShortcutConfig", "run_shortcut", "shortcut_answer"]

log = logging.getLogger(__name__)
DRAIN_OPACITY = 0.25  # drain opacity map -> drain mask
RESULT_NAME = "shortcut.json"


@dataclasses.dataclass(frozen=True)
class ShortcutConfig:
    out: Path
    archs: tuple[str, ...] = ("resnet18", "vit_s16")
    n_train: int = 500  # correlated phantom (split 70/15/15 by patient)
    n_test: int = 200  # decorrelated phantom (every image is a test image)
    size: int = 96
    drain_share: float = 0.9
    test_drain_share: float = 0.5
    epochs: int = 8
    threads: int = 1
    seed: int = 0
    n_boot: int = 1000

    def __post_init__(self) -> None:
        if not self.archs:
            raise InvalidOptionError("--archs: name at least one architecture")
        if self.n_train < 60 or self.n_test < 20:
            raise InvalidOptionError("--n-train must be >= 60 and --n-test >= 20")
        for flag, share in (
            ("--drain-share", self.drain_share),
            ("--test-drain-share", self.test_drain_share),
        ):
            if not 0.0 < share <= 1.0:
                raise InvalidOptionError(f"{flag} must be in (0, 1], got {share}")


@dataclasses.dataclass(frozen=True)
class _Case:
    image_id: str
    label: int
    pixels: np.ndarray
    lesion: np.ndarray
    drain: np.ndarray


def _phantom(
    out: Path, n: int, seed: int, size: int, share: float, negatives: float
) -> list[_Case]:
    """Write (or reuse) one phantom; its cases as the data reader sees them (pixels, lesion
    masks), with the drain masks from re-rendering each planned image."""
    from harness.data.dataset import ReadOptions
    from harness.data.layouts import open_dataset
    from harness.phantom.generate import (
        PhantomConfig,
        generate_phantom,
        plan_cases,
        render_case_with_drain,
    )

    config = PhantomConfig(
        n=n, seed=seed, size=size, confounder_fraction=share, negative_confounder_fraction=negatives
    )
    if not out.is_dir() or not any(out.iterdir()):
        generate_phantom(config, out)
    drains = {
        image_id: render_case_with_drain(config, plan)[3] > DRAIN_OPACITY
        for plan, image_id in zip(plan_cases(config), _truth_ids(out), strict=True)
    }
    cases = []
    for record in open_dataset(out, ReadOptions(progress=False)).records:
        pixels = record.load_pixels()
        lesion = record.load_mask()
        lesion = np.zeros(pixels.shape, dtype=bool) if lesion is None else lesion
        cases.append(
            _Case(record.image_id, int(record.label), pixels, lesion, drains[record.image_id])
        )
    return cases


def _truth_ids(out: Path) -> list[str]:
    from harness.phantom.generate import TRUTH_NAME

    truth = json.loads((out / TRUTH_NAME).read_text(encoding="utf-8"))
    return [entry["image_id"] for entry in truth["images"]]


def _test_ids(data: Path) -> set[str]:
    from harness.data.dataset import ReadOptions
    from harness.data.layouts import open_dataset
    from harness.data.split import load_or_create_split

    dataset = open_dataset(data, ReadOptions(progress=False))
    split = load_or_create_split(dataset, data)
    return {r.image_id for r in split.records(dataset, "test")}


def _train_config(config: ShortcutConfig, arch: str, data: Path, cnn: Path | None) -> Any:
    """A ViT distils from the first CNN trained before it (``cnn``), as the quick profile's
    ViT does: from scratch on a few hundred images it learns nothing, not even the drain."""
    from harness.train.augment import AugmentConfig
    from harness.train.run import TrainConfig

    vit = arch.startswith("vit")
    return TrainConfig(
        teacher=cnn if vit else None,
        arch=arch,
        data=data,
        out=config.out / "models" / arch,
        input_size=config.size,
        epochs=config.epochs,
        batch_size=16,
        lr=5e-5 if vit else 1e-3,
        weight_decay=0.05 if vit else 1e-4,
        warmup_epochs=2 if vit else 1,
        patience=config.epochs,
        seed=config.seed,
        threads=config.threads,
        augment=AugmentConfig(enabled=False),
        progress=False,
    )


def _engine(out: Path) -> tuple[Any, Any]:
    from ptxplain.explain.engine import ExplanationEngine
    from ptxplain.models.meta import META_FILENAME, ModelMeta
    from ptxplain.models.weights import load_weights

    meta = ModelMeta.read(out / META_FILENAME)
    spec = meta.spec
    model = load_weights(spec.build(meta.input_size), out / "weights.safetensors", spec.name)
    return ExplanationEngine(model, spec), meta


def _answers(engine: Any, meta: Any, cases: Sequence[_Case]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Positive probability and the map on the original image, per case (batches of 16)."""
    import torch

    from ptxplain.imaging.preprocess import letterbox, map_to_original, to_model_input

    probabilities, maps = [], []
    for start in range(0, len(cases), 16):
        chunk = cases[start : start + 16]
        laid = [letterbox(c.pixels, meta.input_size) for c in chunk]
        batch = torch.stack([to_model_input(canvas, meta.mean, meta.std) for canvas, _ in laid])
        explanation = engine.explain(batch, methods=("gradcam",))
        probabilities += explanation.probabilities[:, meta.positive_class].tolist()
        cams = explanation.cams["gradcam"]
        maps += [map_to_original(cams[i], geometry) for i, (_, geometry) in enumerate(laid)]
    return np.array(probabilities), maps


def _difference(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> Interval:
    """Mean of a minus mean of b, two independent samples, percentile bootstrap interval."""
    if a.size == 0 or b.size == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, 0, n_boot, 0)
    draws = a[bootstrap_indices(a.size, n_boot, seed)].mean(axis=1) - b[
        bootstrap_indices(b.size, n_boot, seed + 1)
    ].mean(axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return Interval(
        float(a.mean() - b.mean()), float(low), float(high), a.size + b.size, n_boot, n_boot
    )


def _heat_share(heat: np.ndarray, region: np.ndarray) -> float:
    return energy_pointing_game(normalize_map(heat), region) if region.any() else float("nan")


def _split_block(
    cases: Sequence[_Case],
    probabilities: np.ndarray,
    maps: list[np.ndarray],
    threshold: float,
    config: ShortcutConfig,
) -> dict[str, Any]:
    labels = np.array([c.label for c in cases], dtype=bool)
    drained = np.array([c.drain.any() for c in cases])
    called = probabilities >= threshold
    correct = (called == labels).astype(float)
    on_drain = np.array([_heat_share(m, c.drain) for m, c in zip(maps, cases, strict=True)])
    on_lesion = np.array([_heat_share(m, c.lesion) for m, c in zip(maps, cases, strict=True)])
    drain_area = np.array([c.drain.mean() if c.drain.any() else np.nan for c in cases])
    lesion_area = np.array([c.lesion.mean() if c.lesion.any() else np.nan for c in cases])
    boot = {"n_boot": config.n_boot, "seed": config.seed}
    drained_pos = labels & drained
    return {
        "n": int(labels.size),
        "positives": int(labels.sum()),
        "drained": {
            "positives": int((labels & drained).sum()),
            "negatives": int((~labels & drained).sum()),
        },
        "accuracy": bootstrap_mean(correct, **boot).to_json(),
        "auroc": bootstrap_interval(
            lambda idx: auroc(labels[idx], probabilities[idx]), labels.size, **boot
        ).to_json(),
        "positive_rate": {
            "drained_negatives": bootstrap_mean(
                called[~labels & drained].astype(float), **boot
            ).to_json(),
            "plain_negatives": bootstrap_mean(
                called[~labels & ~drained].astype(float), **boot
            ).to_json(),
            "drained_positives": bootstrap_mean(
                called[labels & drained].astype(float), **boot
            ).to_json(),
            "plain_positives": bootstrap_mean(
                called[labels & ~drained].astype(float), **boot
            ).to_json(),
        },
        "negatives_called_positive_drained_minus_plain": _difference(
            called[~labels & drained].astype(float),
            called[~labels & ~drained].astype(float),
            **boot,
        ).to_json(),
        "heat_on_drain": bootstrap_mean(on_drain, **boot).to_json(),
        "drain_area_share": float(np.nanmean(drain_area)) if drained.any() else None,
        "heat_on_drain_minus_area": bootstrap_mean(on_drain - drain_area, **boot).to_json(),
        "heat_on_lesion_drained_positives": bootstrap_mean(
            on_lesion[drained_pos], **boot
        ).to_json(),
        "heat_on_drain_drained_positives": bootstrap_mean(on_drain[drained_pos], **boot).to_json(),
        "lesion_area_share": float(np.nanmean(lesion_area)) if labels.any() else None,
        "_correct": correct,
    }


def _model_block(
    engine: Any, meta: Any, splits: dict[str, list[_Case]], config: ShortcutConfig
) -> dict[str, Any]:
    blocks = {}
    for name, cases in splits.items():
        probabilities, maps = _answers(engine, meta, cases)
        blocks[name] = _split_block(cases, probabilities, maps, meta.threshold, config)
    drop = _difference(
        blocks["correlated_test"].pop("_correct"),
        blocks["decorrelated"].pop("_correct"),
        config.n_boot,
        config.seed,
    )
    low = blocks["correlated_test"]["auroc"]["low"]
    learned = low is not None and low > 0.5  # AUROC interval above chance, shortcut and all
    return {
        "architecture": meta.architecture,
        "threshold": meta.threshold,
        "val_auroc": meta.metrics.get("val_auroc"),
        **blocks,
        "accuracy_drop": drop.to_json(),
        "learned": learned,
        "shortcut_detected": learned and _detected(drop, blocks["decorrelated"]),
    }


def _above_zero(interval: dict[str, Any]) -> bool:
    return interval["low"] is not None and interval["low"] > 0


def _detected(drop: Interval, decorrelated: dict[str, Any]) -> bool:
    fooled = _above_zero(decorrelated["negatives_called_positive_drained_minus_plain"])
    looks = _above_zero(decorrelated["heat_on_drain_minus_area"])
    return bool(drop.low > 0 and (fooled or looks))


def run_shortcut(config: ShortcutConfig, say: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Phantoms, training, in-process evaluation; writes ``out/shortcut.json``."""
    from harness.train.run import train

    config.out.mkdir(parents=True, exist_ok=True)
    correlated_dir, decorrelated_dir = (
        config.out / "data-correlated",
        config.out / "data-decorrelated",
    )
    say(
        f"phantoms: {config.n_train} correlated (drain on {config.drain_share:.0%} of positives), {config.n_test} decorrelated"
    )
    correlated = _phantom(
        correlated_dir, config.n_train, config.seed, config.size, config.drain_share, 0.0
    )
    decorrelated = _phantom(
        decorrelated_dir,
        config.n_test,
        config.seed + 1,
        config.size,
        config.test_drain_share,
        config.test_drain_share,
    )
    test_ids = _test_ids(correlated_dir)
    splits = {
        "correlated_test": [c for c in correlated if c.image_id in test_ids],
        "decorrelated": decorrelated,
    }
    models = {}
    cnn: Path | None = None
    for arch in config.archs:
        train_config = _train_config(config, arch, correlated_dir, cnn)
        if not train_config.finished:
            teacher = train_config.teacher
            taught = f", distilled from {teacher.name}" if teacher else ""
            say(f"{arch}: training {config.epochs} epochs at {config.size} px{taught}")
            train(train_config)
        if cnn is None and not arch.startswith("vit"):
            cnn = train_config.out
        engine, meta = _engine(train_config.out)
        say(f"{arch}: evaluating")
        models[arch] = _model_block(engine, meta, splits, config)
    result = {
        "synthetic": True,
        "config": {
            k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()
        },
        "models": models,
    }
    result["answer"] = shortcut_answer(result)
    (config.out / RESULT_NAME).write_text(
        json.dumps(result, indent=1, allow_nan=False) + "\n", encoding="utf-8"
    )
    return result


def _fmt(interval: dict[str, Any], percent: bool = False) -> str:
    if interval.get("estimate") is None:
        return "—"
    k = 100.0 if percent else 1.0
    unit = " pp" if percent else ""
    low = (
        "—"
        if interval["low"] is None
        else f"{k * interval['low']:+.1f}"
        if percent
        else f"{interval['low']:.3f}"
    )
    high = (
        "—"
        if interval["high"] is None
        else f"{k * interval['high']:+.1f}"
        if percent
        else f"{interval['high']:.3f}"
    )
    est = f"{k * interval['estimate']:+.1f}" if percent else f"{interval['estimate']:.3f}"
    return f"{est}{unit} [{low}, {high}]"


def _model_sentence(name: str, m: dict[str, Any]) -> str:
    d = m["decorrelated"]
    rates = d["positive_rate"]
    verdict = "SHORTCUT DETECTED" if m["shortcut_detected"] else "no shortcut shown"
    if not m["learned"]:
        verdict = "did not learn even with the shortcut (nothing to detect)"
    return (
        f"{name}: {verdict} — test AUROC {_fmt(m['correlated_test']['auroc'])} with the "
        f"correlation, {_fmt(d['auroc'])} without; accuracy "
        f"{_fmt(m['correlated_test']['accuracy'])} with the "
        f"correlation, {_fmt(d['accuracy'])} without (drop {_fmt(m['accuracy_drop'], percent=True)}); "
        f"drained negatives called positive {_fmt(rates['drained_negatives'])} vs "
        f"{_fmt(rates['plain_negatives'])} without a drain; heat on the drain "
        f"{_fmt(d['heat_on_drain'])} (its area share {d['drain_area_share'] or 0:.3f}); on drained "
        f"positives, heat on the drain {_fmt(d['heat_on_drain_drained_positives'])} vs on the "
        f"lesion {_fmt(d['heat_on_lesion_drained_positives'])} (lesion area share "
        f"{d['lesion_area_share'] or 0:.3f})."
    )


def shortcut_answer(result: dict[str, Any]) -> list[str]:
    """The study's answer box, one sentence a line."""
    c = result["config"]
    lines = [
        "SYNTHETIC — phantom images with a drain planted as a shortcut.",
        f"Training: drain on {c['drain_share']:.0%} of positives, none on negatives; "
        f"decorrelated test: drain on {c['test_drain_share']:.0%} of positives and of negatives.",
    ]
    lines += [_model_sentence(name, m) for name, m in result["models"].items()]
    return lines
