"""A short training run's checkpoint archives and serves: `ptxplain train` on a tiny phantom,
`ptxplain archive` of its output served by a real TorchServe, and the served
answer for a phantom DICOM equals the trained model's own answer on the training-side tensor
(no skew between how training and serving read, letterbox and normalize an image). Served
through the real gateway, `ptxplain evaluate` on a split whose test images include the model's
training images stops with an error, and with --allow-seen leaves those images out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.data.dataset import ReadOptions
from harness.phantom.generate import PhantomConfig, generate_phantom
from harness.train.data import load_images, model_batch, read_train_val
from harness.train.run import WEIGHTS_FILENAME
from ptxplain.cli import main
from ptxplain.explain.options import ExplainOptions
from ptxplain.models.meta import META_FILENAME, ModelMeta
from ptxplain.models.registry import get_spec
from ptxplain.models.weights import load_weights
from services.torchserve import RestClient, TorchServeConfig, TorchServeProcess, rest_client
from tests.conftest import free_port_config
from tests.harness.evaluate.live_gateway import gateway_for

pytestmark = pytest.mark.live

SIZE = 32
NAME = "trained_resnet18"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    data = root / "phantom"
    generate_phantom(PhantomConfig(n=24, seed=11, size=64, compressed_fraction=0.25), data)
    out = root / "ckpt"
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
        "2",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--no-pretrained",
        "--no-progress",
    ]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def torchserve_config(
    tmp_path_factory: pytest.TempPathFactory, checkpoint: Path
) -> Iterator[TorchServeConfig]:
    """A TorchServe of its own (TorchServe 0.12 keeps the register API off) serving only the
    checkpoint's archive."""
    root = tmp_path_factory.mktemp("served")
    store = root / "model_store"
    argv = [
        "archive",
        "--arch",
        "resnet18",
        "--name",
        NAME,
        "--checkpoint",
        str(checkpoint / WEIGHTS_FILENAME),
        "--out",
        str(store),
        "--workers",
        "1",
        "--torch-threads",
        "1",
    ]
    assert main(argv) == 0
    config = free_port_config(store, root / "run")
    process = TorchServeProcess(config).start(timeout_s=300)
    try:
        yield config
    finally:
        process.stop()


@pytest.fixture(scope="module")
def served(torchserve_config: TorchServeConfig) -> Iterator[RestClient]:
    with rest_client(torchserve_config, timeout_s=60) as client:
        yield client


def test_a_trained_checkpoint_archives_and_serves_what_it_learned(
    served: RestClient, checkpoint: Path
) -> None:
    meta = ModelMeta.read(checkpoint / META_FILENAME)
    records = read_train_val(checkpoint.parent / "phantom", ReadOptions())
    record = records.val[0]
    served_result = served.predict(NAME, record.path.read_bytes(), ExplainOptions()).result
    assert served_result.status.code == 0, served_result.status.message
    assert served_result.trained and served_result.architecture == "resnet18"
    assert served_result.trained_on == "phantom (synthetic)" == meta.trained_on
    assert served_result.threshold == pytest.approx(meta.threshold)
    model = get_spec("resnet18").build(SIZE)
    load_weights(model, checkpoint / WEIGHTS_FILENAME, "resnet18")
    tensors = load_images([record], SIZE, desc="", progress=False)
    with torch.inference_mode():
        logits = model.eval()(model_batch(tensors.canvases, meta.mean, meta.std))[0]
    assert np.allclose(served_result.logits, logits.numpy(), atol=1e-4)
    positive = served_result.positive_probability
    assert served_result.positive == (positive >= meta.threshold)


def _evaluate(config: TorchServeConfig, data: Path, state: Path, out: Path, *extra: str) -> int:
    with gateway_for(config) as gateway:
        argv = ["evaluate", "--data", str(data), "--state-dir", str(state), "--out", str(out)]
        argv += ["--gateway", f"127.0.0.1:{gateway.grpc_port}", "--n-boot", "20"]
        return main([*argv, "--no-progress", "--loadtest-dir", str(out / "none"), *extra])


def test_evaluating_images_the_model_was_trained_on_is_an_error(
    torchserve_config: TorchServeConfig,
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, state = checkpoint.parent / "phantom", tmp_path / "all-test"
    assert (
        main(["data", "split", str(data), "--state-dir", str(state), "--fractions", "0", "0", "1"])
        == 0
    )
    records = read_train_val(data, ReadOptions())
    seen = len(records.train) + len(records.val)
    capsys.readouterr()
    assert _evaluate(torchserve_config, data, state, tmp_path / "run") == 2
    error = capsys.readouterr().err
    assert f"error: {NAME}: was trained on {seen} of its 24 evaluated images" in error
    first = min(r.image_id for r in (*records.train, *records.val))
    assert f"(e.g. {first}, " in error and "--allow-seen" in error

    assert _evaluate(torchserve_config, data, state, tmp_path / "run", "--allow-seen") == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    model = metrics["models"][NAME]
    assert model["held_out"]["checked"] and model["held_out"]["seen"] == seen
    assert model["classification"]["n"] == 24 - seen
    assert metrics["coverage"]["excluded_seen_by_model"] == {NAME: seen}
    report = (tmp_path / "run" / "report.html").read_text()
    assert f"per-image check: {seen} of 24 evaluated images seen in training" in report


def test_explain_says_when_an_image_is_one_the_model_was_trained_on(
    torchserve_config: TorchServeConfig,
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    records = read_train_val(checkpoint.parent / "phantom", ReadOptions())
    outputs = {}
    with gateway_for(torchserve_config) as gateway:
        for kind, record in (("train", records.train[0]), ("val", records.val[0])):
            argv = ["explain", str(record.path), "--gateway", f"127.0.0.1:{gateway.grpc_port}"]
            assert main([*argv, "--out", str(tmp_path / kind)]) == 0
            outputs[kind] = capsys.readouterr().out
            summary = json.loads((tmp_path / kind / "summary.json").read_text())
            assert summary["models"][NAME]["seen_in_training"] is True
        unseen = tmp_path / "unseen.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(
            unseen
        )
        argv = ["explain", str(unseen), "--gateway", f"127.0.0.1:{gateway.grpc_port}"]
        assert main([*argv, "--out", str(tmp_path / "unseen")]) == 0
        outputs["unseen"] = capsys.readouterr().out
    assert all(
        "[this image is one the model was trained on]" in outputs[k] for k in ("train", "val")
    )
    assert "trained on]" not in outputs["unseen"] and NAME in outputs["unseen"]
