"""The embedded default pipeline's data and archive stages (training has its own tests)."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from handlers.archive import (
    MODEL_CONFIG_FILENAME,
    WeightsSource,
    build_archive,
    read_archive_file,
    read_archive_meta,
)
from harness.phantom.generate import PhantomConfig, generate_phantom
from harness.train import embedded
from harness.train.embedded import DefaultModelsPlan, archive_checkpoints, ensure_phantom
from harness.train.profiles import PhantomRecipe, Profile, ProfileEntry
from ptxplain.cli import main
from ptxplain.errors import ConfigError, InvalidOptionError
from ptxplain.models.meta import META_FILENAME, ModelMeta
from ptxplain.models.registry import get_spec
from ptxplain.models.weights import save_weights

PROFILE = Profile(
    name="tiny",
    description="test",
    entries=(ProfileEntry("resnet18", 64, 1, 4, 1e-3), ProfileEntry("vit_s16", 64, 1, 4, 1e-3)),
    phantom=PhantomRecipe(n=6, size=64, seed=3),
)


def plan(tmp_path: Path, profile: Profile = PROFILE) -> DefaultModelsPlan:
    return DefaultModelsPlan(tmp_path / "data", tmp_path / "ckpt", tmp_path / "store", profile)


def test_phantom_is_written_once(tmp_path: Path) -> None:
    lines: list[str] = []
    ensure_phantom(plan(tmp_path), lines.append)
    assert (tmp_path / "data" / "train-rle.csv").exists()
    assert len(list((tmp_path / "data").rglob("*.dcm"))) == 6
    ensure_phantom(plan(tmp_path), lines.append)
    assert "already there" in lines[-1]


def test_no_recipe_and_no_data_is_a_clear_error(tmp_path: Path) -> None:
    bare = Profile("bare", "no phantom", PROFILE.entries)
    with pytest.raises(InvalidOptionError, match="no phantom recipe"):
        ensure_phantom(plan(tmp_path, bare), print)


def test_trained_checkpoints_are_archived_and_missing_ones_named(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt" / "resnet18"
    spec = get_spec("resnet18")
    torch.manual_seed(0)
    save_weights(spec.build(64), folder / "weights.safetensors")
    meta = ModelMeta.for_spec(spec, 64, trained=True, threshold=0.3, metrics={"val_auroc": 0.9})
    meta.write(folder / META_FILENAME)
    lines: list[str] = []
    [built] = archive_checkpoints(plan(tmp_path), lines.append)
    assert built.path == tmp_path / "store" / "resnet18.mar"
    with zipfile.ZipFile(built.path) as archive:
        names = archive.namelist()
        assert META_FILENAME in names and "weights.safetensors" in names
        assert b'"trained": true' in archive.read(META_FILENAME)
    assert any("vit_s16 has no finished checkpoint" in line for line in lines)
    assert archive_checkpoints(plan(tmp_path), lines.append) == []
    assert "already there" in lines[-2]


def _checkpoint(tmp_path: Path, fingerprint: str, dataset: str) -> None:
    folder = tmp_path / "ckpt" / "resnet18"
    spec = get_spec("resnet18")
    torch.manual_seed(0)
    save_weights(spec.build(64), folder / "weights.safetensors")
    meta = ModelMeta.for_spec(
        spec,
        64,
        trained=True,
        data_fingerprint=fingerprint,
        dataset=dataset,
        synthetic=dataset == "phantom",
        recipe={"settings_key": "k-" + fingerprint},
    )
    meta.write(folder / META_FILENAME)


def test_an_archive_trained_on_other_data_stops_archiving_unless_forced(tmp_path: Path) -> None:
    _checkpoint(tmp_path, "aaaa", "phantom")
    lines: list[str] = []
    archive_checkpoints(plan(tmp_path), lines.append)
    _checkpoint(tmp_path, "bbbb", "siim")  # retrained on other data; the archive is stale
    with pytest.raises(ConfigError, match=r"trained on phantom \(synthetic\).*trained on siim"):
        archive_checkpoints(plan(tmp_path), lines.append)
    assert read_archive_meta(tmp_path / "store" / "resnet18.mar").dataset == "phantom"
    [rebuilt] = archive_checkpoints(plan(tmp_path), lines.append, force=True)
    assert read_archive_meta(rebuilt.path).trained_on == "siim"
    assert archive_checkpoints(plan(tmp_path), lines.append) == []
    assert "already there (trained on siim)" in lines[-2]


def test_a_random_init_archive_is_kept_with_a_notice(tmp_path: Path) -> None:
    _checkpoint(tmp_path, "aaaa", "phantom")
    build_archive("resnet18", tmp_path / "store", weights=WeightsSource(seed=0, input_size=64))
    lines: list[str] = []
    assert archive_checkpoints(plan(tmp_path), lines.append) == []
    assert any("notice" in line and "random-init" in line for line in lines)
    assert read_archive_meta(tmp_path / "store" / "resnet18.mar").trained_on == "untrained"


def test_models_if_empty_checks_the_store_against_the_data_and_does_not_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make deploy`'s step: archives present -> only a check; one trained on other data than
    DATA stops it, naming both (the old models are never silently served for new data)."""
    generate_phantom(PhantomConfig(n=20, seed=2, size=64), tmp_path / "data")
    argv = ["models", "--data", str(tmp_path / "data"), "--checkpoints", str(tmp_path / "ckpt")]
    argv += ["--model-store", str(tmp_path / "store"), "--if-empty"]
    build_archive("vgg16_bn", tmp_path / "store", weights=WeightsSource(seed=0, input_size=64))
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "random-init" in out and "not training" in out and not (tmp_path / "ckpt").exists()
    _checkpoint(tmp_path, "cccc", "siim")
    archive_checkpoints(plan(tmp_path), print)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "resnet18.mar was trained on siim" in err and "phantom (synthetic)" in err
    assert not (tmp_path / "ckpt" / "resnet34").exists()


def _trained(tmp_path: Path, arch: str) -> None:
    folder = tmp_path / "ckpt" / arch
    spec = get_spec(arch)
    torch.manual_seed(0)
    save_weights(spec.build(64), folder / "weights.safetensors")
    ModelMeta.for_spec(spec, 64, trained=True).write(folder / META_FILENAME)


def _workers_in(archive: Path) -> tuple[int, int]:
    config = yaml.safe_load(read_archive_file(archive, MODEL_CONFIG_FILENAME))
    return config["minWorkers"], config["maxWorkers"]


def test_auto_workers_are_planned_from_the_costs_into_model_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for arch in ("resnet18", "vit_s16"):
        _trained(tmp_path, arch)
    measured: list[dict] = []

    def costs(models: dict, batch_size: int, threads: int) -> dict[str, float]:
        measured.append(models)
        return {"resnet18": 1.0, "vit_s16": 9.0}  # vit: 1.8 of 2 cores at the limit

    monkeypatch.setattr(embedded, "measure_costs", costs)
    monkeypatch.setattr(embedded, "_runs_on_gpu", lambda device: False)
    lines: list[str] = []
    auto = dataclasses.replace(plan(tmp_path), workers=None, cores=2)
    built = {b.architecture: b.path for b in archive_checkpoints(auto, lines.append)}
    assert measured == [{"resnet18": ("resnet18", 64), "vit_s16": ("vit_s16", 64)}]
    assert _workers_in(built["resnet18"]) == (1, 1)
    assert _workers_in(built["vit_s16"]) == (2, 2)
    assert any("vit_s16" in line and "90% of the cost" in line for line in lines)
    forced = dataclasses.replace(plan(tmp_path), workers=1)
    rebuilt = archive_checkpoints(forced, lines.append, force=True)
    assert [_workers_in(b.path) for b in rebuilt] == [(1, 1), (1, 1)]
    assert "workers: 1 per model (--workers 1)" in lines


def test_models_cli_workers_flag_defaults_to_auto_and_this_machines_cores() -> None:
    from ptxplain.cli import _parser

    args = _parser().parse_args(["models"])
    assert args.workers is None and args.cores >= 1
    assert _parser().parse_args(["models", "--workers", "1"]).workers == 1
