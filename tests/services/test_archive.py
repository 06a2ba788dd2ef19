"""Model archives: contents, manifest, model config, stored (not deflated) entries, weights."""

from __future__ import annotations

import ast
import json
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from handlers.archive import (
    ENTRY_FILENAME,
    ENTRY_SOURCE,
    MODEL_CONFIG_FILENAME,
    WEIGHTS_FILENAME,
    ServingOptions,
    WeightsSource,
    build_archive,
    read_archive_file,
)
from handlers.torchserve_handler import HandlerConfig
from ptxplain.cli import main
from ptxplain.errors import ConfigError, WeightsError
from ptxplain.models.meta import META_FILENAME, ModelMeta
from ptxplain.models.registry import get_spec
from ptxplain.models.weights import load_weights, save_weights

ARCH = "efficientnet_b0"  # the smallest registry model (5 M parameters)
SIZE = 32


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 'trained' checkpoint: safetensors weights with ptxplain-model.json beside them."""
    folder = tmp_path_factory.mktemp("checkpoint")
    spec = get_spec(ARCH)
    torch.manual_seed(7)
    save_weights(spec.build(SIZE), folder / "best.safetensors")
    ModelMeta.for_spec(spec, SIZE, trained=True, threshold=0.3).write(folder / META_FILENAME)
    return folder / "best.safetensors"


@pytest.fixture(scope="module")
def random_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("store")
    serving = ServingOptions(batch_size=4, max_batch_delay_ms=50, torch_threads=2, max_bytes=1000)
    built = build_archive(
        ARCH, store, name="tiny", weights=WeightsSource(seed=3, input_size=SIZE), serving=serving
    )
    assert built.path == store / "tiny.mar" and built.size_bytes == built.path.stat().st_size
    assert list(store.iterdir()) == [built.path]  # nothing else (no partial file) is left
    return built.path


def test_archive_holds_the_five_files_all_stored(random_archive: Path) -> None:
    with zipfile.ZipFile(random_archive) as opened:
        infos = {info.filename: info for info in opened.infolist()}
    expected = {ENTRY_FILENAME, WEIGHTS_FILENAME, META_FILENAME, MODEL_CONFIG_FILENAME}
    assert set(infos) == expected | {"MAR-INF/MANIFEST.json"}
    assert all(info.compress_type == zipfile.ZIP_STORED for info in infos.values())
    assert all(info.compress_size == info.file_size for info in infos.values())


def test_manifest_names_handler_weights_and_config(random_archive: Path) -> None:
    manifest = json.loads(read_archive_file(random_archive, "MAR-INF/MANIFEST.json"))
    assert manifest["runtime"] == "python"
    assert manifest["archiverVersion"] == "0.12.0"
    model = manifest["model"]
    assert model["modelName"] == "tiny"
    assert model["handler"] == ENTRY_FILENAME
    assert model["serializedFile"] == WEIGHTS_FILENAME
    assert model["configFile"] == MODEL_CONFIG_FILENAME


def test_model_config_yaml(random_archive: Path) -> None:
    config = yaml.safe_load(read_archive_file(random_archive, MODEL_CONFIG_FILENAME))
    assert config == {
        "minWorkers": 1,
        "maxWorkers": 1,
        "batchSize": 4,
        "maxBatchDelay": 50,
        "responseTimeout": 120,
        "ptxplain": {"torch_threads": 2, "max_bytes": 1000},
    }  # no deviceType: TorchServe picks the device where it runs (the default, auto)


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_an_asked_device_is_written_as_torchserve_reads_it(device: str) -> None:
    config = ServingOptions(device=device).model_config()  # type: ignore[arg-type]
    assert config["deviceType"] == device
    assert "deviceType" not in ServingOptions().model_config()


def test_random_init_metadata_and_weights_round_trip(random_archive: Path, tmp_path: Path) -> None:
    (tmp_path / "weights.safetensors").write_bytes(
        read_archive_file(random_archive, WEIGHTS_FILENAME)
    )
    (tmp_path / META_FILENAME).write_bytes(read_archive_file(random_archive, META_FILENAME))
    meta = ModelMeta.read(tmp_path / META_FILENAME)
    assert (meta.architecture, meta.input_size, meta.trained) == (ARCH, SIZE, False)
    assert "seed 3" in meta.weights_source
    model = load_weights(get_spec(ARCH).build(SIZE), tmp_path / "weights.safetensors", ARCH)
    torch.manual_seed(3)
    reference = get_spec(ARCH).build(SIZE)
    for (name, value), expected in zip(
        model.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        assert torch.equal(value, expected), name


def test_entry_file_defines_exactly_one_class_from_the_handler(random_archive: Path) -> None:
    source = read_archive_file(random_archive, ENTRY_FILENAME).decode()
    assert source == ENTRY_SOURCE.read_text()
    tree = ast.parse(source)
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    assert [c.name for c in classes] == ["Handler"]
    assert [ast.unparse(base) for base in classes[0].bases] == ["PtxplainHandler"]
    imports = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert [(i.module, [a.name for a in i.names]) for i in imports] == [
        ("handlers.torchserve_handler", ["PtxplainHandler"])
    ]


def test_checkpoint_archive_keeps_its_metadata_and_weights(
    checkpoint: Path, tmp_path: Path
) -> None:
    built = build_archive(ARCH, tmp_path, weights=WeightsSource(checkpoint=checkpoint))
    meta = json.loads(read_archive_file(built.path, META_FILENAME))
    assert meta["trained"] is True and meta["threshold"] == 0.3
    assert read_archive_file(built.path, WEIGHTS_FILENAME) == checkpoint.read_bytes()


def test_pt_checkpoint_is_converted_to_safetensors(checkpoint: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    folder = tmp_path / "pt"
    folder.mkdir()
    state = load_file(str(checkpoint))
    torch.save(state, folder / "best.pt")
    (folder / META_FILENAME).write_bytes((checkpoint.parent / META_FILENAME).read_bytes())
    built = build_archive(ARCH, tmp_path, weights=WeightsSource(checkpoint=folder / "best.pt"))
    (tmp_path / "out.safetensors").write_bytes(read_archive_file(built.path, WEIGHTS_FILENAME))
    converted = load_file(str(tmp_path / "out.safetensors"))
    assert converted.keys() == state.keys()
    assert all(torch.equal(converted[k], state[k]) for k in state)


def test_missing_checkpoint_names_file_and_architecture(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsError, match=f"{missing}.*{ARCH}"):
        build_archive(ARCH, tmp_path / "store", weights=WeightsSource(checkpoint=missing))
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_missing_metadata_names_file_and_architecture(checkpoint: Path, tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.safetensors"
    lonely.write_bytes(checkpoint.read_bytes())
    with pytest.raises(WeightsError, match=f"{lonely}.*{ARCH}.*{META_FILENAME}"):
        build_archive(ARCH, tmp_path, weights=WeightsSource(checkpoint=lonely))


def test_metadata_of_another_architecture_is_refused(checkpoint: Path) -> None:
    with pytest.raises(
        WeightsError, match="describes architecture 'efficientnet_b0', not 'resnet18'"
    ):
        build_archive(
            "resnet18", checkpoint.parent / "x", weights=WeightsSource(checkpoint=checkpoint)
        )


def test_weights_that_do_not_fit_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(checkpoint))
    state["classifier.1.weight"] = torch.zeros(3, state["classifier.1.weight"].shape[1])
    state.pop(next(iter(state)))
    save_file(state, str(tmp_path / "bad.safetensors"))
    (tmp_path / META_FILENAME).write_bytes((checkpoint.parent / META_FILENAME).read_bytes())
    with pytest.raises(
        WeightsError, match=r"does not fit.*missing.*wrong shape \['classifier.1.weight'\]"
    ):
        build_archive(
            ARCH, tmp_path / "s", weights=WeightsSource(checkpoint=tmp_path / "bad.safetensors")
        )


@pytest.mark.parametrize(
    "options",
    [
        {"batch_size": 0},
        {"workers": 0},
        {"max_batch_delay_ms": 0},
        {"device": "tpu"},
        {"autocast": "int8"},
    ],
)
def test_bad_serving_options_are_config_errors(options: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(options)).split("_ms")[0]):
        ServingOptions(**options)


def test_bad_model_name_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model name 'bad name'"):
        build_archive(ARCH, tmp_path, name="bad name")


def test_cli_builds_an_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["archive", "--arch", ARCH, "--random-init", "--input-size", "32", "--name", "cli"]
    assert main([*argv, "--batch-size", "2", "--out", str(tmp_path)]) == 0
    assert str(tmp_path / "cli.mar") in capsys.readouterr().out
    assert (
        yaml.safe_load(read_archive_file(tmp_path / "cli.mar", MODEL_CONFIG_FILENAME))["batchSize"]
        == 2
    )


def test_cli_reports_a_missing_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "archive",
        "--arch",
        ARCH,
        "--checkpoint",
        str(tmp_path / "gone.pt"),
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 2
    assert "gone.pt" in capsys.readouterr().err


def test_autocast_reaches_the_handler_config() -> None:
    section = ServingOptions(autocast="bfloat16", torch_threads=2).model_config()["ptxplain"]
    assert section == {"torch_threads": 2, "autocast": "bfloat16"}
    config = HandlerConfig.from_mapping(section)
    assert (config.autocast, config.torch_threads) == ("bfloat16", 2)
    assert HandlerConfig.from_mapping({}).autocast is None
