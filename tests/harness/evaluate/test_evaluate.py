"""Replay, the append-only store and resume, bad input, and the whole evaluation with a fake
explainer client (the real gateway's end-to-end run is in test_evaluate_gateway.py)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.evaluate.replay import FanOutAnswer, ReplayConfig, replay
from harness.evaluate.run import EvaluateConfig, evaluate, load_test_split
from harness.store import ResultsStore
from ptxplain.errors import (
    BackendError,
    Code,
    ConfigError,
    InvalidOptionError,
    SeenInTrainingError,
    UnknownModelError,
)
from tests.harness.evaluate.evaluation_fakes import FakeCatalogClient, phantom_split, records_of

MODELS = ("resnet18", "resnet50", "vgg16")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return phantom_split(tmp_path_factory.mktemp("eval"), n=16)


def _lines(store: ResultsStore) -> list[str]:
    return [json.loads(line)["image_id"] for line in store.path.read_text().splitlines()]


def _config(**kw: object) -> ReplayConfig:
    return ReplayConfig(MODELS, progress=False, **kw)  # type: ignore[arg-type]


def test_interrupted_run_resumes_without_duplicates_or_losses(data: Path, tmp_path: Path) -> None:
    records = records_of(data)
    store = ResultsStore(tmp_path)
    down = FakeCatalogClient(records, down_after=5)
    first = replay(
        list(records.values()), down, store, _config(concurrency=1, max_consecutive_failures=2)
    )
    assert first.stored == 5 and first.aborted.startswith("2 requests in a row failed")
    assert len(first.failed) == 2 and "unavailable" in first.failed[0][1]
    assert len(store.load()) == 5

    healthy = FakeCatalogClient(records)
    second = replay(list(records.values()), healthy, store, _config(concurrency=3))
    assert second.already_done == 5 and second.stored == 11 and not second.aborted
    assert not set(healthy.calls) & set(down.calls[:5])  # finished images are not re-sent
    lines = _lines(store)
    assert len(lines) == len(set(lines)) == len(records)  # no duplicates, nothing lost
    assert set(lines) == set(records)


def test_concurrency_is_bounded(data: Path, tmp_path: Path) -> None:
    records = records_of(data)
    client = FakeCatalogClient(records, delay_s=0.02)
    outcome = replay(list(records.values()), client, ResultsStore(tmp_path), _config(concurrency=3))
    assert outcome.stored == len(records)
    assert 1 < client.max_in_flight <= 3
    with pytest.raises(InvalidOptionError, match="--concurrency"):
        _config(concurrency=0)


def test_torn_last_line_is_dropped_and_redone(data: Path, tmp_path: Path) -> None:
    records = records_of(data)
    store = ResultsStore(tmp_path)
    replay(list(records.values())[:3], FakeCatalogClient(records), store, _config())
    text = store.path.read_bytes()
    store.path.write_bytes(text + b'{"image_id": "torn')  # a crash mid-append
    assert len(store.load()) == 3 and store.torn_lines == 1
    assert store.path.read_bytes() == text
    # A torn line that is not the last one is corruption, not an interrupted write.
    store.path.write_bytes(b'{"image_id": "x"\n' + text)
    with pytest.raises(ConfigError, match="line 1 is not a result record"):
        store.load()


def test_dropped_models_are_recorded_then_retried(data: Path, tmp_path: Path) -> None:
    records = records_of(data)
    store = ResultsStore(tmp_path)
    ids = list(records)
    failing = FakeCatalogClient(
        records, dropped=("resnet50",), drop_after=4, fail_models={"vgg16": {ids[0]}}
    )
    replay(list(records.values()), failing, store, _config(concurrency=1))
    stored = store.load()
    absent = [i for i, r in stored.items() if not r.answers["resnet50"].ok]
    assert len(absent) == len(records) - 4
    assert stored[absent[0]].answers["resnet50"].code == int(Code.UNAVAILABLE)
    assert stored[ids[0]].answers["vgg16"].code == int(Code.INTERNAL)

    healthy = FakeCatalogClient(records)
    replay(list(records.values()), healthy, store, _config())
    assert sorted(healthy.calls) == sorted(absent)  # INTERNAL (permanent) is not retried
    assert all(r.answers["resnet50"].ok for r in store.load().values())
    assert not store.load()[ids[0]].answers["vgg16"].ok


def test_evaluate_counts_what_is_missing(data: Path, tmp_path: Path) -> None:
    records = records_of(data)
    positives = [i for i, r in records.items() if r.label == 1]
    client = FakeCatalogClient(records, fail_models={"vgg16": set(positives[:2])})
    out = tmp_path / "run"
    config = EvaluateConfig(
        data=data, out=out, gateway="fake", n_boot=50, progress=False, loadtest_dir=None
    )
    outcome = evaluate(config, client)
    vgg = outcome.metrics["models"]["vgg16"]
    assert not outcome.complete
    assert (vgg["classification"]["n"], vgg["classification"]["missing"]) == (len(records) - 2, 2)
    assert vgg["localization"]["missing"] == 2
    assert vgg["localization"]["n"] + 2 == outcome.metrics["positives_with_mask"]
    assert outcome.metrics["coverage"]["missing_by_model"] == {
        "resnet18": 0,
        "resnet50": 0,
        "vgg16": 2,
    }
    assert outcome.metrics["synthetic"] is True
    with (out / "per_image.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(records) * len(MODELS)
    assert sum(r["status"] != "ok" for r in rows) == 2
    assert json.loads((out / "metrics.json").read_text())["schema"] == "ptxplain-metrics/1"
    assert "Incomplete run" in (out / "report.html").read_text()

    # --report-only: same store, no client; the model list comes from models.json.
    again = evaluate(config, None)
    assert (
        again.replay is None and again.metrics["models"].keys() == outcome.metrics["models"].keys()
    )


def test_gateway_down_from_the_start(data: Path, tmp_path: Path) -> None:
    client = FakeCatalogClient(records_of(data), down_after=0)
    with pytest.raises(BackendError, match="unavailable"):  # no model list saved: nothing to do
        evaluate(EvaluateConfig(data=data, out=tmp_path, progress=False), client)
    # With the model list of an earlier run, the run goes on, fails fast and says so.
    (tmp_path / "models.json").write_text(
        json.dumps([f.to_json() for f in FakeCatalogClient(records_of(data)).list_models()])
    )
    config = EvaluateConfig(
        data=data,
        out=tmp_path,
        gateway="fake",
        n_boot=20,
        progress=False,
        max_consecutive_failures=3,
        concurrency=1,
        loadtest_dir=None,
    )
    outcome = evaluate(config, client)
    assert outcome.replay is not None and outcome.replay.aborted and outcome.replay.stored == 0
    for model in outcome.metrics["models"].values():
        assert model["classification"]["n"] == 0
        assert model["classification"]["missing"] == 16
        assert model["classification"]["metrics"]["accuracy"]["estimate"] is None


def test_bad_inputs(data: Path, tmp_path: Path) -> None:
    from harness.data.dataset import ReadOptions
    from harness.phantom.generate import PhantomConfig, generate_phantom

    unsplit = tmp_path / "unsplit"
    generate_phantom(PhantomConfig(n=4, seed=2, size=64), unsplit)
    with pytest.raises(ConfigError, match=r"no test split.*ptxplain data split"):
        load_test_split(unsplit, ReadOptions())
    client = FakeCatalogClient(records_of(data))
    config = EvaluateConfig(
        data=data,
        out=tmp_path / "a",
        models=("resnet18", "nope"),
        progress=False,
        loadtest_dir=None,
    )
    with pytest.raises(UnknownModelError, match="--models nope: not served"):
        evaluate(config, client)
    with pytest.raises(ConfigError, match="run once with --gateway"):
        evaluate(EvaluateConfig(data=data, out=tmp_path / "b", progress=False), None)


def _fake_config(data: Path, out: Path, **settings: Any) -> EvaluateConfig:
    """A run against the fake client: 20 bootstrap resamples, no bars, no load test."""
    values: dict[str, Any] = dict(
        data=data, out=out, gateway="fake", n_boot=20, progress=False, loadtest_dir=None
    )
    return EvaluateConfig(**(values | settings))


def test_robustness_block(data: Path, tmp_path: Path) -> None:
    from ptxplain.models.registry import get_spec
    from ptxplain.models.weights import save_weights

    torch.manual_seed(0)
    weights = save_weights(get_spec("resnet18").build(), tmp_path / "resnet18.safetensors")
    config = _fake_config(
        data,
        tmp_path / "run",
        robustness_images=2,
        sanity_weights=(("resnet18", weights),),
        sanity_images=1,
    )
    block = evaluate(config, FakeCatalogClient(records_of(data))).metrics["robustness"]
    agreement = block["agreement"]
    assert agreement["models"] == list(MODELS)
    assert agreement["matrix"][0][0] == pytest.approx(1.0)  # a model agrees with itself
    assert agreement["n"][0][1] == 8  # every positive of the phantom split
    shift = block["stability"]["resnet50"]["shift 4 px"]
    assert shift["n"] == 2 and shift["spearman_mean"] is not None
    sanity = block["randomization"]["resnet18"]
    assert sanity["n"] == 1 and isinstance(sanity["passes"], bool)
    report = (tmp_path / "run" / "report.html").read_text()
    assert "Model-randomization sanity check" in report and "Agreement between" in report


def test_calibrated_localization_and_paired_comparisons(data: Path, tmp_path: Path) -> None:
    # The fake's maps blend the mask pooled to 7x7 with noise: quality 0.9 > 0.7 > 0.5.
    records = records_of(data)
    config = EvaluateConfig(
        data=data,
        out=tmp_path / "run",
        gateway="fake",
        n_boot=50,
        progress=False,
        loadtest_dir=None,
    )
    metrics = evaluate(config, FakeCatalogClient(records)).metrics
    calibrated = {}
    for name, model in metrics["models"].items():
        loc = model["localization"]
        assert loc["grids"] == ["7x7"]
        ehr = loc["calibration"]["effective_heat_ratio"]
        refs = ehr["references"]
        assert refs["uniform"] < refs["ideal"] < refs["mask"] == 1.0
        calibrated[name] = ehr["calibrated"]["estimate"]
    # The least noisy maps come close to the ideal 7x7 map; noisier ones fall towards the floor.
    assert calibrated["resnet50"] > 0.7 > 0.3 > max(calibrated["resnet18"], calibrated["vgg16"])
    assert metrics["learned"]["models"] == sorted(MODELS)
    resnet = [e for e in metrics["paired_localization"] if e["scope"] == "resnet"]
    assert {(e["a"][0], e["b"][0]) for e in resnet} == {("resnet50", "resnet18")}
    assert all(e["n"] == metrics["positives_with_mask"] for e in resnet)
    with (tmp_path / "run" / "per_image.csv").open() as handle:
        row = next(r for r in csv.DictReader(handle) if r["grid"])
    assert row["grid"] == "7x7" and row["ideal:effective_heat_ratio"]


@dataclasses.dataclass
class CtrlCClient(FakeCatalogClient):
    """Ctrl-C after ``interrupt_after`` calls (it reaches the replay loop as KeyboardInterrupt)."""

    interrupt_after: int = 0

    def explain(self, image_id: str, image: bytes) -> FanOutAnswer:
        if len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt
        return super().explain(image_id, image)


def test_ctrl_c_says_one_line_exits_130_and_every_invocation_is_kept(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ptxplain.cli import evaluate as cli_evaluate
    from ptxplain.cli import main

    records = records_of(data)
    out = tmp_path / "run"
    interrupted = CtrlCClient(records, interrupt_after=5)
    monkeypatch.setattr(cli_evaluate, "_client", lambda args, models: interrupted)
    argv = ["evaluate", "--data", str(data), "--gateway", "fake", "--out", str(out)]
    argv += ["--concurrency", "1", "--n-boot", "20", "--no-progress", "--loadtest-dir", ""]
    assert main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"interrupted: 5 of {len(records)} stored; run the same command to resume"
    ), err
    assert "Traceback" not in "\n".join(err)
    monkeypatch.setattr(cli_evaluate, "_client", lambda args, models: FakeCatalogClient(records))
    assert main(argv) == 0
    invocations = json.loads((out / "metrics.json").read_text())["run"]["invocations"]
    assert [(i["stored"], i["already_done"], i["aborted"]) for i in invocations] == [
        (5, 0, "interrupted"),
        (len(records) - 5, 5, ""),
    ]


def test_images_a_model_was_trained_on_stop_the_run_unless_allowed(
    data: Path, tmp_path: Path
) -> None:
    records = records_of(data)
    seen = set(sorted(records)[:3])
    client = FakeCatalogClient(
        records, seen={"resnet50": seen}, digests={"resnet50": 40, "vgg16": 9}
    )
    config = _fake_config(data, tmp_path / "run")
    with pytest.raises(
        SeenInTrainingError, match=r"^resnet50: was trained on 3 of its 16"
    ) as caught:
        evaluate(config, client)
    assert caught.value.model == "resnet50" and min(seen) in caught.value.message
    both = FakeCatalogClient(records, seen={"resnet50": seen, "vgg16": seen}, digests={"vgg16": 9})
    with pytest.raises(SeenInTrainingError, match=r"resnet50 was trained on 3 .*; vgg16 was"):
        evaluate(dataclasses.replace(config, out=tmp_path / "both"), both)
    assert caught.value.code == Code.FAILED_PRECONDITION
    with pytest.raises(SeenInTrainingError):  # the stored answers say so: --report-only too
        evaluate(config, None)

    outcome = evaluate(dataclasses.replace(config, allow_seen=True), None)
    models = outcome.metrics["models"]
    assert models["resnet50"]["held_out"] | {"seen_ids": None} == {
        "checked": True,
        "training_digests": 40,
        "evaluated": 16,
        "seen": 3,
        "seen_examples": sorted(seen),
        "excluded": True,
        "seen_ids": None,
    }
    assert models["resnet50"]["classification"]["n"] == 13
    assert models["vgg16"]["classification"]["n"] == 16 and not models["vgg16"]["held_out"]["seen"]
    assert (
        outcome.complete and outcome.metrics["coverage"]["excluded_seen_by_model"]["resnet50"] == 3
    )
    report = (tmp_path / "run" / "report.html").read_text()
    assert "per-image check: 3 of 16 evaluated images seen in training — excluded" in report
    assert "per-image check: 0 of 16 evaluated images seen in training" in report  # vgg16
    assert "not checked (archive without training digests)" in report  # resnet18
