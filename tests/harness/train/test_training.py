"""Training: a real (tiny) run end to end, determinism, resume, imbalance, initial weights,
profiles and the CLI. Every run trains ResNet-18 at 32 px on a 32-image phantom for 1-3 epochs."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import harness.data.dicom_io
from harness.data.dataset import ReadOptions
from harness.data.layouts import open_dataset
from harness.data.split import SPLIT_FILENAME
from harness.phantom.generate import PhantomConfig, generate_phantom
from harness.train.augment import AugmentConfig, augment_batch
from harness.train.loop import EpochRunner
from harness.train.metrics import class_weights, youden_threshold
from harness.train.pretrained import (
    LocalWeightDirs,
    find_local_weights,
    initialise_weights,
    zero_init_residuals,
)
from harness.train.profiles import QUICK, STUDY, Profile, ProfileEntry, profile_configs, run_profile
from harness.train.run import WEIGHTS_FILENAME, TrainConfig, train
from harness.train.state import STATE_FILENAME
from ptxplain.cli import main
from ptxplain.errors import ConfigError, InvalidInputError, InvalidOptionError, WeightsError
from ptxplain.models.meta import META_FILENAME, ModelMeta
from ptxplain.models.registry import get_spec
from ptxplain.models.weights import load_weights, save_weights

SIZE = 32


def _phantom(root: Path, positive_fraction: float) -> Path:
    config = PhantomConfig(
        n=32, seed=5, size=64, positive_fraction=positive_fraction, compressed_fraction=0.0
    )
    generate_phantom(config, root)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A balanced 32-image phantom; its split file lands in the folder on first use."""
    return _phantom(tmp_path_factory.mktemp("train") / "phantom", 0.5)


def _config(data: Path, out: Path, **overrides: object) -> TrainConfig:
    values: dict[str, object] = dict(
        arch="resnet18",
        data=data,
        out=out,
        input_size=SIZE,
        epochs=2,
        batch_size=8,
        lr=1e-3,
        seed=0,
        threads=1,
        progress=False,
    )
    values.update(overrides)
    return TrainConfig(**values)  # type: ignore[arg-type]


def _weights_bytes(out: Path) -> bytes:
    return (out / WEIGHTS_FILENAME).read_bytes()


def test_short_run_writes_a_checkpoint_that_meta_and_weights_readers_accept(
    data: Path, tmp_path: Path
) -> None:
    result = train(_config(data, tmp_path / "ckpt"))
    meta = ModelMeta.read(tmp_path / "ckpt" / META_FILENAME)
    assert result.finished and meta == result.meta
    assert meta.trained and meta.architecture == "resnet18" and meta.input_size == SIZE
    assert meta.weights_source == "ptxplain train (scratch)"
    assert 0.0 <= meta.threshold <= 1.0 and len(meta.data_fingerprint) == 64
    assert {"val_auroc", "val_sensitivity", "val_specificity"} <= set(meta.metrics)
    assert meta.extra["threshold_rule"] == "youden_j_on_val"
    assert meta.trained_on == "phantom (synthetic)"
    assert len(meta.extra["history"]) == 2
    load_weights(get_spec("resnet18").build(SIZE), result.weights_path, "resnet18")
    assert not (tmp_path / "ckpt" / STATE_FILENAME).exists()


def test_same_seed_gives_the_same_checkpoint_bytes(data: Path, tmp_path: Path) -> None:
    train(_config(data, tmp_path / "a", epochs=1))
    train(_config(data, tmp_path / "b", epochs=1))
    train(_config(data, tmp_path / "c", epochs=1, seed=1))
    assert _weights_bytes(tmp_path / "a") == _weights_bytes(tmp_path / "b")
    assert _weights_bytes(tmp_path / "a") != _weights_bytes(tmp_path / "c")


def test_resume_after_an_interruption_gives_the_uninterrupted_weights(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # patience 3 keeps all three epochs whatever the tiny validation AUROC does
    whole = train(_config(data, tmp_path / "whole", epochs=3, patience=3))
    assert whole.epochs == 3
    stopped = train(_config(data, tmp_path / "cut", epochs=3, patience=3, stop_after=1))
    assert not stopped.finished and (tmp_path / "cut" / STATE_FILENAME).exists()
    original = EpochRunner.train_epoch
    calls = {"n": 0}

    def interrupt_second(self: EpochRunner, *args: object, **kwargs: object) -> float:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(EpochRunner, "train_epoch", interrupt_second)
    with pytest.raises(KeyboardInterrupt):  # epoch 2 runs, epoch 3 is interrupted
        train(_config(data, tmp_path / "cut", epochs=3, patience=3, resume=True))
    monkeypatch.setattr(EpochRunner, "train_epoch", original)
    resumed = train(_config(data, tmp_path / "cut", epochs=3, patience=3, resume=True))
    assert resumed.finished and resumed.meta is not None
    assert [h["epoch"] for h in resumed.meta.extra["history"]] == [1, 2, 3]
    assert _weights_bytes(tmp_path / "cut") == _weights_bytes(tmp_path / "whole")


def test_resume_refuses_a_state_from_other_settings(data: Path, tmp_path: Path) -> None:
    train(_config(data, tmp_path / "run", epochs=2, stop_after=1))
    with pytest.raises(ConfigError, match="other settings"):
        train(_config(data, tmp_path / "run", epochs=2, lr=5e-4, resume=True))
    with pytest.raises(ConfigError, match="--resume"):
        train(_config(data, tmp_path / "run", epochs=2))


def test_a_finished_folder_is_skipped_only_for_this_very_run(data: Path, tmp_path: Path) -> None:
    first = train(_config(data, tmp_path / "run", epochs=1))
    weights = _weights_bytes(tmp_path / "run")
    again = train(_config(data, tmp_path / "run", epochs=1))
    assert (
        again.epochs == 0
        and again.meta == first.meta
        and _weights_bytes(tmp_path / "run") == weights
    )
    with pytest.raises(ConfigError, match=r"recipe: .*epochs 1 -> 2.*--force"):
        train(_config(data, tmp_path / "run", epochs=2))
    forced = train(_config(data, tmp_path / "run", epochs=2, force=True))
    assert forced.epochs == 2 and forced.meta is not None
    assert forced.meta.recipe["hyperparameters"]["epochs"] == 2
    assert train(_config(data, tmp_path / "run", epochs=2, overwrite=True)).epochs == 2


def test_checkpoints_record_what_they_were_trained_on(data: Path, tmp_path: Path) -> None:
    meta = train(_config(data, tmp_path / "run", epochs=1)).meta
    assert meta is not None
    assert meta.dataset == "phantom" and meta.synthetic and meta.trained_on == "phantom (synthetic)"
    assert len(meta.train_ids_sha256) == 64 and meta.cam_grid == (1, 1)  # resnet at 32 px
    assert meta.recipe["settings_key"] and meta.recipe["hyperparameters"]["input_size"] == SIZE
    written = json.loads((tmp_path / "run" / META_FILENAME).read_text())
    assert written["trained_on"] == "phantom (synthetic)" and written["cam_grid"] == [1, 1]


def test_other_data_in_a_finished_folder_stops_training_unless_forced(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run over a different data set never silently reuses the old model: alone, in a
    profile (which stops before training anything) or through the CLI."""
    out = tmp_path / "ckpts" / "resnet18"
    train(_config(data, out, epochs=1))
    other = tmp_path / "siim-like"
    generate_phantom(PhantomConfig(n=32, seed=6, size=64, compressed_fraction=0.0), other)
    (other / "phantom-truth.json").unlink()  # not recognisably the phantom: named by its folder
    with pytest.raises(ConfigError, match=r"trained on phantom \(synthetic\).*on siim-like"):
        train(_config(other, out, epochs=1))
    profile = Profile("tiny", "test", (ProfileEntry("resnet18", SIZE, 1, 8, 1e-3),))
    configs = profile_configs(profile, _config(other, tmp_path / "ckpts", epochs=1), {})
    with pytest.raises(ConfigError, match="siim-like"):
        run_profile(configs)
    argv = ["train", "--profile", "quick", "--data", str(other), "--out", str(tmp_path / "q")]
    quick_out = tmp_path / "q" / QUICK.entries[0].arch
    shutil.copytree(out, quick_out)
    assert main([*argv, "--no-progress", "--threads", "1"]) == 2  # before any training
    assert "siim-like" in capsys.readouterr().err and not (tmp_path / "q" / "resnet34").exists()
    [outcome] = run_profile([dataclasses.replace(configs[0], force=True)])
    assert not outcome.skipped and outcome.result is not None and outcome.result.meta is not None
    assert outcome.result.meta.dataset == "siim-like" and not outcome.result.meta.synthetic


def test_class_weights_balance_an_imbalanced_training_split(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    assert class_weights(np.array([0, 0, 0, 1])).tolist() == pytest.approx([2 / 3, 2.0])
    with pytest.raises(InvalidInputError, match="every class"):
        class_weights(np.array([0, 0, 0]))
    skewed = _phantom(tmp_path_factory.mktemp("skewed") / "phantom", 0.25)
    meta = train(_config(skewed, tmp_path / "run", epochs=1)).meta
    assert meta is not None
    counts = meta.extra["split_counts"]["train"]
    n, positive = counts["images"], counts["positive"]
    assert positive < n - positive
    expected = [n / (2 * (n - positive)), n / (2 * positive)]
    assert meta.extra["class_weights"] == pytest.approx(expected)


def test_the_test_split_is_never_read(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[Path] = []
    original = harness.data.dicom_io.read_image_pixels

    def spy(path: Path) -> np.ndarray:
        read.append(Path(path))
        return original(path)

    monkeypatch.setattr(harness.data.dicom_io, "read_image_pixels", spy)
    train(_config(data, tmp_path / "run", epochs=1))
    assignment = json.loads((data / SPLIT_FILENAME).read_text())["images"]
    dataset = open_dataset(data, ReadOptions())
    split_of = {r.path: assignment[r.image_id] for r in dataset.records}
    assert sorted({split_of[p] for p in read}) == ["train", "val"]
    assert len(read) == sum(1 for s in split_of.values() if s != "test")


def _imagenet_file(tmp_path: Path, arch: str, size: int, name: str) -> Path:
    torch.manual_seed(7)
    model = get_spec(arch).builder(1000, size)
    return save_weights(model, tmp_path / name)


def test_an_imagenet_file_loads_the_backbone_and_keeps_a_fresh_head(
    data: Path, tmp_path: Path
) -> None:
    path = _imagenet_file(tmp_path, "resnet18", SIZE, "resnet18-imagenet.pth")
    file_state = torch.load(path, weights_only=True)
    spec = get_spec("resnet18")
    torch.manual_seed(0)
    model = spec.build(SIZE)
    init = initialise_weights(model, spec, path, None)
    assert init.source == "imagenet:resnet18-imagenet.pth" and not init.head_loaded
    assert torch.equal(
        model.state_dict()["layer4.1.conv2.weight"], file_state["layer4.1.conv2.weight"]
    )
    assert model.state_dict()["fc.weight"].shape == (2, 512)
    assert not torch.equal(model.state_dict()["fc.weight"], file_state["fc.weight"][:2])
    meta = train(_config(data, tmp_path / "run", epochs=1, weights=path)).meta
    assert (
        meta is not None
        and meta.weights_source == "ptxplain train (imagenet:resnet18-imagenet.pth)"
    )


def test_a_vit_imagenet_file_at_224_fits_a_smaller_input(tmp_path: Path) -> None:
    path = _imagenet_file(tmp_path, "vit_s16", 224, "vit.safetensors")
    spec = get_spec("vit_s16")
    model = spec.build(SIZE)
    initialise_weights(model, spec, path, None)  # position embedding resampled 14x14 -> 2x2
    assert model.state_dict()["pos_embed"].shape == (1, 1 + 4, 384)


def test_a_mismatched_file_is_a_weights_error_naming_file_and_architecture(
    tmp_path: Path,
) -> None:
    path = _imagenet_file(tmp_path, "resnet34", SIZE, "resnet34.pth")
    spec = get_spec("resnet18")
    with pytest.raises(WeightsError, match=r"resnet34\.pth.*'resnet18'.*unexpected"):
        initialise_weights(spec.build(SIZE), spec, path, None)
    with pytest.raises(WeightsError, match="does not exist"):
        initialise_weights(spec.build(SIZE), spec, tmp_path / "absent.pth", None)


def test_cached_weights_are_found_only_in_the_local_caches(tmp_path: Path) -> None:
    dirs = LocalWeightDirs(torch_hub=tmp_path / "hub", hf_hub=tmp_path / "hf")
    spec = get_spec("resnet18")
    model = spec.build(SIZE)
    assert find_local_weights(spec, model, dirs) is None
    assert initialise_weights(model, spec, None, dirs).source == "scratch"
    cached = _imagenet_file(dirs.torch_hub, "resnet18", SIZE, "resnet18-f37072fd.pth")
    assert find_local_weights(spec, model, dirs) == cached
    assert initialise_weights(model, spec, None, dirs).source == "imagenet:resnet18-f37072fd.pth"
    vit = get_spec("vit_s16")
    snapshot = "models--timm--vit_small_patch16_224.augreg_in21k_ft_in1k/snapshots/abc"
    hf_file = dirs.hf_hub / snapshot / "model.safetensors"
    hf_file.parent.mkdir(parents=True)
    hf_file.touch()
    assert find_local_weights(vit, vit.build(SIZE), dirs) == hf_file


def test_zero_init_residual_applies_only_to_a_from_scratch_resnet(tmp_path: Path) -> None:
    spec = get_spec("resnet18")
    model = spec.build(SIZE)
    initialise_weights(model, spec, None, None, zero_init_residual=True)
    assert model.state_dict()["layer1.0.bn2.weight"].abs().max() == 0.0
    assert zero_init_residuals(get_spec("resnet50").build(SIZE)) == 16
    assert zero_init_residuals(get_spec("vgg16_bn").build(SIZE)) == 0
    path = _imagenet_file(tmp_path, "resnet18", SIZE, "resnet18.pth")
    initialise_weights(model, spec, path, None, zero_init_residual=True)
    assert model.state_dict()["layer1.0.bn2.weight"].abs().max() > 0.0


def test_youden_threshold_sits_in_the_gap_of_separated_scores() -> None:
    labels, scores = np.array([0, 0, 1, 1]), np.array([0.1, 0.3, 0.7, 0.9])
    choice = youden_threshold(labels, scores)
    assert choice.threshold == pytest.approx(0.5) and choice.youden_j == 1.0
    overlap = youden_threshold(np.array([0, 1, 0, 1]), np.array([0.2, 0.4, 0.6, 0.8]))
    assert overlap.threshold == pytest.approx(0.7) and overlap.youden_j == pytest.approx(0.5)


def test_augmentation_is_reproducible_bounded_and_can_be_disabled() -> None:
    canvases = torch.rand(4, SIZE, SIZE)
    content = torch.ones(4, SIZE, SIZE)
    content[:, :, :8] = 0.0
    canvases = canvases * content
    config = AugmentConfig()

    def run(seed: int) -> torch.Tensor:
        return augment_batch(canvases, content, config, torch.Generator().manual_seed(seed))

    first = run(1)
    assert torch.equal(first, run(1)) and not torch.equal(first, run(2))
    assert first.min() >= 0.0 and first.max() <= 1.0 and first[:, :, :2].abs().max() == 0.0
    off = augment_batch(canvases, content, AugmentConfig(enabled=False), torch.Generator())
    assert torch.equal(off, canvases)


def test_the_quick_profile_spans_three_families_and_three_resnet_depths() -> None:
    specs = [get_spec(e.arch) for e in QUICK.entries]
    assert len(specs) >= 5 and {"vgg", "resnet", "vit"} <= {s.family for s in specs}
    assert len({s.depth for s in specs if s.family == "resnet"}) >= 3
    assert [get_spec(e.arch).in_study for e in STUDY.entries] == [True] * 9
    assert {e.input_size for e in STUDY.entries} == {224}


def test_a_profile_trains_each_model_once_and_flags_override_it(data: Path, tmp_path: Path) -> None:
    profile = Profile("tiny", "test", (ProfileEntry("resnet18", SIZE, 1, 8, 1e-3),))
    base = _config(data, tmp_path / "ckpts")
    configs = profile_configs(profile, base, {"epochs": 2})
    assert configs[0].epochs == 2 and configs[0].out == tmp_path / "ckpts" / "resnet18"
    assert configs[0].augment.enabled
    assert not profile_configs(profile, base, {"augment": False})[0].augment.enabled
    assert all(not c.augment.enabled for c in profile_configs(QUICK, base, {}))
    first = run_profile(configs)
    again = run_profile(configs)
    assert not first[0].skipped and first[0].result is not None and first[0].result.epochs == 2
    assert again[0].skipped and (tmp_path / "ckpts" / "resnet18" / META_FILENAME).is_file()


def test_cli_trains_one_architecture(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    argv = [
        "train",
        "--arch",
        "resnet18",
        "--data",
        str(data),
        "--out",
        str(out),
        "--input-size",
        str(SIZE),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--no-pretrained",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "val AUROC" in capsys.readouterr().out
    meta = ModelMeta.read(out / META_FILENAME)
    assert meta.extra["hyperparameters"]["precision"] == "fp32"
    assert main([*argv[:-1], "--weights", str(tmp_path / "none.pth"), "--overwrite"]) == 2
    assert "none.pth" in capsys.readouterr().err


def test_config_rejects_bad_values(data: Path, tmp_path: Path) -> None:
    for bad in ({"epochs": 0}, {"batch_size": 1}, {"optimizer": "lion"}, {"precision": "fp8"}):
        with pytest.raises(InvalidOptionError, match="--"):
            dataclasses.replace(_config(data, tmp_path), **bad)
