"""``ptxplain evaluate``: replay the test split through the gateway, then write metrics.json,
per_image.csv and report.html into the run folder.

Order of work: read the data folder and its stored patient-level split (no split file, or an
empty test split, is an error: the test images must be the ones held out in training); ask
the gateway which models it serves (or read models.json of an earlier run, for
``--report-only``); replay what is not finished yet; check that no model was trained on an
evaluated image (:mod:`harness.evaluate.seen`); compute everything from the store.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Protocol

from harness.data.dataset import Dataset, ImageRecord, ReadOptions
from harness.data.layouts import open_dataset
from harness.evaluate.replay import (
    ExplainClient,
    ReplayConfig,
    ReplayInterrupted,
    ReplayOutcome,
    replay,
)
from harness.evaluate.seen import exclude_seen, held_out_check
from harness.metrics.depth import ModelFacts
from harness.metrics.latency import latency_summary
from harness.metrics.study import StudyInputs, compute_study
from harness.store import ImageResult, ResultsStore
from ptxplain.errors import BackendError, ConfigError, InvalidInputError, UnknownModelError

__all__ = [
    "CatalogClient",
    "EvaluateConfig",
    "EvaluationOutcome",
    "evaluate",
    "load_test_split",
]

SCHEMA = "ptxplain-metrics/1"
_log = logging.getLogger(__name__)
MODELS_NAME = "models.json"
RUN_NAME = "run.json"


class CatalogClient(ExplainClient, Protocol):
    def list_models(self) -> list[ModelFacts]: ...

    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    data: Path
    out: Path
    gateway: str = ""  # "" = --report-only: no replay, metrics from the store
    transport: str = "grpc"
    concurrency: int = 4
    models: tuple[str, ...] = ()
    n_boot: int = 1000
    seed: int = 0
    read: ReadOptions = dataclasses.field(default_factory=ReadOptions)
    loadtest_dir: Path | None = Path("reports/loadtest")
    robustness_images: int = 0  # positives re-sent perturbed through the gateway
    agreement_images: int = 100  # positives whose stored maps are compared across models
    sanity_weights: tuple[tuple[str, Path], ...] = ()  # (model, weights file): randomization check
    sanity_images: int = 4
    max_consecutive_failures: int = 20
    retry_failed: bool = True
    progress: bool = True
    # images a model was trained on: left out of its metrics instead of an error (--allow-seen)
    allow_seen: bool = False


@dataclasses.dataclass(frozen=True)
class EvaluationOutcome:
    metrics: dict[str, Any]
    replay: ReplayOutcome | None
    complete: bool  # every model answered every test image


def load_test_split(data: Path, read: ReadOptions) -> tuple[Dataset, list[ImageRecord]]:
    """The data folder and its stored split's test records."""
    from harness.data.split import SPLIT_FILENAME, load_or_create_split

    dataset = open_dataset(data, read)
    state_dir = read.state_dir or data
    if not (state_dir / SPLIT_FILENAME).is_file():
        raise ConfigError(
            f"{state_dir / SPLIT_FILENAME}: no split file, so no test split; make it with "
            f"`ptxplain data split {data}` (the models must be trained on its train split)"
        )
    test = load_or_create_split(dataset, state_dir).records(dataset, "test")
    if not test:
        raise ConfigError(f"{state_dir / SPLIT_FILENAME}: the test split has no images")
    return dataset, test


def _check_run(out: Path, data: Path, fingerprint: str) -> dict[str, Any]:
    """The run folder belongs to one data folder's split; refuse to mix two."""
    path = out / RUN_NAME
    if path.exists():
        run = json.loads(path.read_text(encoding="utf-8"))
        if run.get("fingerprint") != fingerprint:
            raise ConfigError(
                f"{path}: this run folder holds results for {run.get('data')} (another data "
                f"set or split); use a new --out"
            )
        return dict(run)
    out.mkdir(parents=True, exist_ok=True)
    run = {"data": str(data), "fingerprint": fingerprint, "created_at": time.time()}
    path.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    return run


def _record_invocation(out: Path, outcome: ReplayOutcome) -> dict[str, Any]:
    """Append this invocation's replay counts to run.json (every run of the same folder, an
    interrupted one too, keeps its line); the run record as it is now."""
    path = out / RUN_NAME
    run = json.loads(path.read_text(encoding="utf-8"))
    entry = {k: v for k, v in outcome.to_json().items() if k != "failed"}
    entry.update(at=time.time(), failed=len(outcome.failed))
    run.setdefault("invocations", []).append(entry)
    path.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    return dict(run)


def _select(catalog: list[ModelFacts], wanted: tuple[str, ...]) -> dict[str, ModelFacts]:
    by_name = {f.name: f for f in catalog}
    unknown = [m for m in wanted if m not in by_name]
    if unknown:
        raise UnknownModelError(
            f"--models {', '.join(unknown)}: not served; known: {', '.join(sorted(by_name))}"
        )
    return {m: by_name[m] for m in (wanted or tuple(sorted(by_name)))}


def _models(config: EvaluateConfig, client: CatalogClient | None) -> dict[str, ModelFacts]:
    """The gateway's model list (saved); the saved one for --report-only, or when the gateway
    cannot be reached but an earlier run saved it (the replay then fails and says so)."""
    path = config.out / MODELS_NAME
    if client is not None:
        try:
            served = client.list_models()
        except BackendError:
            if not path.is_file():
                raise
            _log.warning("gateway unreachable; using the model list saved in %s", path)
        else:
            facts = _select(served, config.models)
            path.write_text(json.dumps([f.to_json() for f in facts.values()], indent=1) + "\n")
            return facts
    if not path.is_file():
        raise ConfigError(f"{path}: no model list; run once with --gateway before --report-only")
    stored = [ModelFacts.from_json(d) for d in json.loads(path.read_text(encoding="utf-8"))]
    return _select(stored, config.models)


def _is_synthetic(dataset: Dataset) -> bool:
    from harness.phantom.generate import TRUTH_NAME

    return (Path(dataset.summary.root) / TRUTH_NAME).is_file()


def _coverage(
    records: list[ImageRecord], study: dict[str, Any], held_out: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    excluded = {n: b["seen"] if b["excluded"] else 0 for n, b in held_out.items()}
    per_model = {
        n: m["classification"]["missing"] - excluded.get(n, 0) for n, m in study["models"].items()
    }
    return {
        "test_images": len(records),
        "missing_by_model": per_model,
        "excluded_seen_by_model": excluded,
        "complete": not any(per_model.values()),
    }


def _positive_records(records: list[ImageRecord], limit: int) -> list[ImageRecord]:
    return [r for r in records if r.label == 1 and (r.mask_pixels or 0) > 0][:limit]


def _agreement(
    records: list[ImageRecord],
    store: ResultsStore,
    results: dict[str, ImageResult],
    facts: dict[str, ModelFacts],
    limit: int,
) -> dict[str, Any]:
    from harness.metrics.robustness import agreement_matrix
    from harness.metrics.study import heat_in_original

    maps = []
    for record in _positive_records(records, limit):
        if (result := results.get(record.image_id)) is None:
            continue
        stored = store.load_maps(result)
        maps.append(
            {
                m: heat_in_original(result.answers[m], stored[m])
                for m in facts
                if m in stored and result.answers[m].ok
            }
        )
    return agreement_matrix(maps, list(facts))


def _robustness(
    config: EvaluateConfig,
    client: CatalogClient | None,
    records: list[ImageRecord],
    store: ResultsStore,
    results: dict[str, ImageResult],
    facts: dict[str, ModelFacts],
) -> dict[str, Any]:
    from harness.metrics import robustness

    block: dict[str, Any] = {
        "agreement": _agreement(records, store, results, facts, config.agreement_images),
        "stability": {},
        "note": f"maps compared at <= {robustness.COMPARE_SIDE} px on the longer side",
    }
    if client is not None and config.robustness_images > 0:
        pixels = [r.load_pixels() for r in _positive_records(records, config.robustness_images)]
        block["stability"] = robustness.stability(robustness.ClientExplainer(client), pixels)
    if config.sanity_weights:
        pixels = [r.load_pixels() for r in _positive_records(records, config.sanity_images)]
        block["randomization"] = {}
        for model, weights in config.sanity_weights:
            if model not in facts:
                raise UnknownModelError(f"--sanity {model}: not among the evaluated models")
            trained, randomized = robustness.engine_pair(facts[model].architecture, weights)
            block["randomization"].update(
                robustness.randomization_check(
                    robustness.EngineExplainer(trained, model),
                    robustness.EngineExplainer(randomized, model),
                    pixels,
                )
            )
    return block


def _train_fingerprint(config: EvaluateConfig) -> str:
    """The data + split fingerprint that training records for this folder's train split (the
    report compares each model's served fingerprint with it)."""
    from harness.train.data import read_train_val

    return read_train_val(config.data, config.read).fingerprint


def write_per_image_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("", encoding="utf-8")
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def evaluate(config: EvaluateConfig, client: CatalogClient | None) -> EvaluationOutcome:
    """Replay (when a client is given), then compute and write every output."""
    from harness.data.split import fingerprint
    from harness.report.build import render_report

    dataset, records = load_test_split(config.data, config.read)
    run = _check_run(config.out, config.data, fingerprint(dataset))
    facts = _models(config, client)
    store = ResultsStore(config.out)
    outcome = None
    if client is not None:
        replay_config = ReplayConfig(
            tuple(facts),
            config.concurrency,
            config.retry_failed,
            config.max_consecutive_failures,
            config.progress,
        )
        try:
            outcome = replay(records, client, store, replay_config)
        except ReplayInterrupted as interrupted:
            _record_invocation(config.out, interrupted.outcome)
            raise
        run = _record_invocation(config.out, outcome)
    results = store.load()
    known = {r.image_id for r in records}
    if stray := sorted(set(results) - known):
        raise InvalidInputError(
            f"{store.path}: {len(stray)} results for images outside the test "
            f"split (first: {stray[0]})"
        )
    held_out = held_out_check(results, facts, allow=config.allow_seen)
    scored = exclude_seen(results, held_out)
    study, rows = compute_study(
        StudyInputs(tuple(records), scored, store, facts, config.n_boot, config.seed)
    )
    for name, block in held_out.items():
        study["models"][name]["held_out"] = block
    run["train_fingerprint"] = _train_fingerprint(config)
    metrics = {
        "schema": SCHEMA,
        "synthetic": _is_synthetic(dataset),
        "dataset": {
            **dataset.summary.to_json(),
            "test_images": len(records),
            "test_positive": sum(int(r.label) for r in records),
        },
        "run": {
            **run,
            "gateway": config.gateway,
            "transport": config.transport,
            "n_boot": config.n_boot,
            "seed": config.seed,
            "replay": None if outcome is None else outcome.to_json(),  # this invocation's
            "invocations": run.get("invocations", []),  # every invocation's counts
        },
        "coverage": _coverage(records, study, held_out),
        **study,
        "robustness": _robustness(config, client, records, store, scored, facts),
        "latency": latency_summary(
            results, list(facts), None if outcome is None else outcome.throughput
        ),
    }
    metrics["dataset"].pop("skipped", None)
    (config.out / "metrics.json").write_text(json.dumps(metrics, indent=1, allow_nan=False) + "\n")
    write_per_image_csv(config.out / "per_image.csv", rows)
    render_report(metrics, rows, records, store, config.out / "report.html", config.loadtest_dir)
    complete = metrics["coverage"]["complete"] and (outcome is None or not outcome.aborted)
    return EvaluationOutcome(metrics, outcome, complete)
