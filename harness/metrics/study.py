"""From stored per-image results and the test split to the study's metrics (metrics.json) and
per-image rows (per_image.csv). docs/evaluate.md documents the schema; docs/metrics.md the
definitions.

Every metric says how many images it rests on (``n``) and how many of the images it should
have used are missing (``missing``, with reasons): a model that failed on some images is
never averaged silently over fewer.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from harness.data.dataset import ImageRecord
from harness.metrics.baselines import (
    CALIBRATED_METRICS,
    REFERENCES,
    calibrate,
    grid_pointing_game,
    mask_on_grid,
    reference_scores,
)
from harness.metrics.classification import (
    ModelPredictions,
    classification_summary,
    confusion_counts,
    paired_auroc_comparisons,
    probability_calibration,
)
from harness.metrics.comparisons import learned_models, paired_localization
from harness.metrics.depth import ModelFacts, depth_correlations
from harness.metrics.localization import (
    SIZE_BINS,
    SWEEP_THRESHOLDS,
    localization_scores,
    size_bin,
    size_edges,
)
from harness.metrics.stats import bootstrap_mean
from harness.store import ImageResult, ModelAnswer, ResultsStore

__all__ = [
    "DEPTH_METRICS",
    "LOCALIZATION_SUMMARY",
    "StudyInputs",
    "compute_study",
    "heat_in_original",
]

LOCALIZATION_SUMMARY = (
    "effective_heat_ratio",
    "grid_pointing_game",
    "pointing_game",
    "energy_pointing_game",
    "relevance_rank_accuracy",
    "pixel_auroc",
    "iou_at_0.5",
    "dice_at_0.5",
    "iou_best",
    "dice_best",
    "mean_heat_gap",
)
DEPTH_METRICS = (
    ("classification", "accuracy"),
    ("classification", "auroc"),
    ("classification", "balanced_accuracy"),
    ("localization", "effective_heat_ratio"),
    ("localization", "grid_pointing_game"),
    ("localization", "pointing_game"),
    ("localization", "energy_pointing_game"),
    ("localization", "pixel_auroc"),
    ("calibrated", "effective_heat_ratio"),
    ("calibrated", "grid_pointing_game"),
)
REFERENCE_COLUMNS = tuple(f"{r}:{m}" for r in REFERENCES for m in CALIBRATED_METRICS)


@dataclasses.dataclass(frozen=True)
class StudyInputs:
    records: tuple[ImageRecord, ...]  # the test split
    results: Mapping[str, ImageResult]  # stored answers by image id
    store: ResultsStore
    facts: Mapping[str, ModelFacts]  # the evaluated models
    n_boot: int = 1000
    seed: int = 0


def heat_in_original(answer: ModelAnswer, heatmap: np.ndarray) -> np.ndarray:
    """A native-resolution map laid onto the original image (mask coordinates)."""
    from ptxplain.imaging.preprocess import Geometry, map_to_original

    if answer.geometry is None:
        raise ValueError(f"{answer.model}: answer has a map but no geometry")
    return map_to_original(heatmap, Geometry(**answer.geometry))


def _answer(inputs: StudyInputs, image_id: str, model: str) -> ModelAnswer | None:
    result = inputs.results.get(image_id)
    return None if result is None else result.answers.get(model)


def _why_missing(answer: ModelAnswer | None) -> str:
    if answer is None:
        return "not answered (image not replayed yet, or the request failed)"
    return f"{answer.message or 'error'} (code {answer.code})"


def _predictions(inputs: StudyInputs, model: str) -> tuple[ModelPredictions, Counter[str]]:
    rows, missing = [], Counter[str]()
    for record in inputs.records:
        answer = _answer(inputs, record.image_id, model)
        if answer is None or not answer.ok:
            missing[_why_missing(answer)] += 1
            continue
        rows.append(
            (record.image_id, bool(record.label), answer.positive_probability, answer.positive)
        )
    ids = tuple(r[0] for r in rows)
    arrays = [
        np.array([r[i] for r in rows], dtype=t) for i, t in ((1, bool), (2, float), (3, bool))
    ]
    return ModelPredictions(ids, *arrays), missing


def _classification_block(
    inputs: StudyInputs, model: str
) -> tuple[dict[str, Any], ModelPredictions]:
    predictions, missing = _predictions(inputs, model)
    summary = classification_summary(predictions, n_boot=inputs.n_boot, seed=inputs.seed)
    thresholds = sorted(
        {
            a.threshold
            for r in inputs.results.values()
            if (a := r.answers.get(model)) is not None and a.ok
        }
    )
    block = {
        "n": len(predictions.image_ids),
        "missing": sum(missing.values()),
        "missing_reasons": dict(missing),
        "thresholds": thresholds,
        "confusion": confusion_counts(predictions.labels, predictions.positive),
        "metrics": {k: v.to_json() for k, v in summary.items()},
        "curves": probability_calibration(predictions.labels, predictions.probabilities),
    }
    return block, predictions


def _positives(records: Sequence[ImageRecord]) -> tuple[list[ImageRecord], int]:
    with_mask = [r for r in records if r.label == 1 and (r.mask_pixels or 0) > 0]
    return with_mask, sum(1 for r in records if r.label == 1) - len(with_mask)


def _area(record: ImageRecord) -> float:
    return (record.mask_pixels or 0) / float(record.shape[0] * record.shape[1])


def _seed(image_id: str, grid: tuple[int, int], seed: int) -> int:
    import zlib

    return zlib.crc32(f"{image_id}:{grid[0]}x{grid[1]}:{seed}".encode())


def _scored_row(
    answer: ModelAnswer,
    native: np.ndarray,
    mask: np.ndarray,
    references: dict[tuple[Any, ...], dict[str, dict[str, float]]],
    seed: int,
) -> dict[str, Any]:
    """Raw scores of one map, its grid pointing game and the references at its grid."""
    from ptxplain.imaging.preprocess import Geometry

    geometry = Geometry(**(answer.geometry or {}))
    grid = (int(native.shape[0]), int(native.shape[1]))
    key = (grid, tuple(sorted((answer.geometry or {}).items())))
    if key not in references:
        references[key] = reference_scores(mask, geometry, grid, seed)
    row: dict[str, Any] = dict(localization_scores(heat_in_original(answer, native), mask))
    row["grid"] = f"{grid[0]}x{grid[1]}"
    row["grid_pointing_game"] = grid_pointing_game(native, mask_on_grid(mask, geometry, grid))
    for ref, scores in references[key].items():
        row.update({f"{ref}:{m}": v for m, v in scores.items()})
    return row


def _localization_rows(
    inputs: StudyInputs, positives: list[ImageRecord], edges: tuple[float, float]
) -> Iterator[dict[str, Any]]:
    """Per (positive image, model): scores with the references at the model's grid, or the
    reason there are none."""
    for record in positives:
        result = inputs.results.get(record.image_id)
        maps = inputs.store.load_maps(result) if result is not None else {}
        mask = record.load_mask()
        references: dict[tuple[Any, ...], dict[str, dict[str, float]]] = {}
        for model in inputs.facts:
            answer = _answer(inputs, record.image_id, model)
            row: dict[str, Any] = {
                "image_id": record.image_id,
                "model": model,
                "area_fraction": _area(record),
                "size_bin": size_bin(_area(record), edges),
            }
            if answer is None or not answer.ok or model not in maps or mask is None:
                row["missing"] = (
                    _why_missing(answer) if answer is None or not answer.ok else "no map"
                )
            else:
                native = maps[model]
                seed = _seed(record.image_id, native.shape, inputs.seed)
                row.update(_scored_row(answer, native, mask, references, seed))
            yield row


def _mean_block(rows: list[dict[str, Any]], inputs: StudyInputs) -> dict[str, Any]:
    scored = [r for r in rows if "missing" not in r]
    block: dict[str, Any] = {"n": len(scored), "missing": len(rows) - len(scored)}
    block["metrics"] = {
        m: bootstrap_mean(
            np.array([r[m] for r in scored], dtype=float), n_boot=inputs.n_boot, seed=inputs.seed
        ).to_json()
        for m in LOCALIZATION_SUMMARY
    }
    return block


def _localization_block(rows: list[dict[str, Any]], inputs: StudyInputs) -> dict[str, Any]:
    block = _mean_block(rows, inputs)
    block["missing_reasons"] = dict(Counter(r["missing"] for r in rows if "missing" in r))
    block["by_size"] = {
        b: _mean_block([r for r in rows if r["size_bin"] == b], inputs) for b in SIZE_BINS
    }
    scored = [r for r in rows if "missing" not in r]
    block["grids"] = sorted({r["grid"] for r in scored})
    block["calibration"] = {
        m: calibrate(scored, m, n_boot=inputs.n_boot, seed=inputs.seed).to_json()
        for m in CALIBRATED_METRICS
    }
    block["iou_curve"] = {
        f"{t:.1f}": float(np.mean([r[f"iou_sweep_{t:.1f}"] for r in scored])) if scored else None
        for t in SWEEP_THRESHOLDS
    }
    return block


def _value(model: dict[str, Any], area: str, metric: str) -> float | None:
    if area == "calibrated":
        value = model["localization"]["calibration"][metric]["calibrated"]["estimate"]
    else:
        value = model[area]["metrics"][metric]["estimate"]
    return None if value is None else float(value)


def _input_sizes(inputs: StudyInputs, model: str) -> list[str]:
    sizes = {
        f"{a.geometry['input_height']}x{a.geometry['input_width']}"
        for r in inputs.results.values()
        if (a := r.answers.get(model)) is not None and a.ok and a.geometry
    }
    return sorted(sizes)


def _scored_by_model(loc_rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for row in loc_rows:
        if "missing" not in row:
            by_model.setdefault(row["model"], {})[row["image_id"]] = row
    return by_model


def compute_study(inputs: StudyInputs) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The models / comparisons / depth blocks of metrics.json, and the per-image rows."""
    positives, unmasked = _positives(inputs.records)
    edges = size_edges(np.array([_area(r) for r in positives]))
    loc_rows = list(_localization_rows(inputs, positives, edges))
    models: dict[str, Any] = {}
    predictions: dict[str, ModelPredictions] = {}
    for name, facts in inputs.facts.items():
        classification, predictions[name] = _classification_block(inputs, name)
        model_rows = [r for r in loc_rows if r["model"] == name]
        models[name] = {
            **facts.to_json(),
            "input_sizes": _input_sizes(inputs, name),
            "classification": classification,
            "localization": _localization_block(model_rows, inputs),
        }
    comparisons = paired_auroc_comparisons(predictions, n_boot=inputs.n_boot, seed=inputs.seed)
    learned, excluded = learned_models(models)
    per_metric = {
        f"{area}.{metric}": {n: _value(models[n], area, metric) for n in learned}
        for area, metric in DEPTH_METRICS
    }
    study = {
        "models": models,
        "learned": {"models": learned, "excluded": excluded},
        "paired_auroc": [c.to_json() for c in comparisons],
        "paired_localization": paired_localization(
            inputs.facts,
            learned,
            _scored_by_model(loc_rows),
            n_boot=inputs.n_boot,
            seed=inputs.seed,
        ),
        "depth_analysis": depth_correlations(
            {n: f for n, f in inputs.facts.items() if n in learned}, per_metric
        ),
        "size_bins": {
            "basis": "lesion area / image area; tertiles over the test positives",
            "edges": list(edges),
            "names": list(SIZE_BINS),
        },
        "positives_with_mask": len(positives),
        "positives_without_mask": unmasked,
    }
    return study, _per_image_rows(inputs, loc_rows)


def _per_image_rows(inputs: StudyInputs, loc_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_key = {(r["image_id"], r["model"]): r for r in loc_rows}
    rows = []
    for record in inputs.records:
        for model in inputs.facts:
            answer = _answer(inputs, record.image_id, model)
            row = {
                "image_id": record.image_id,
                "label": int(record.label),
                "model": model,
                "status_code": None if answer is None else answer.code,
                "status": _why_missing(answer) if answer is None or not answer.ok else "ok",
                "positive_probability": None
                if answer is None or not answer.ok
                else answer.positive_probability,
                "threshold": None if answer is None or not answer.ok else answer.threshold,
                "positive": None if answer is None or not answer.ok else int(answer.positive),
                "client_ms": None if answer is None else answer.client_ms,
            }
            loc = by_key.get((record.image_id, model), {})
            row.update(
                {
                    k: loc.get(k)
                    for k in ("area_fraction", "size_bin", "grid", *LOCALIZATION_SUMMARY)
                }
            )
            row.update({k: loc.get(k) for k in REFERENCE_COLUMNS})
            rows.append(row)
    return rows
