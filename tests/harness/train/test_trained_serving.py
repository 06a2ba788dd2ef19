"""A short training run's checkpoint archives and serves: `ptxplain train` on a tiny phantom,
`ptxplain archive` of its output served by a real TorchServe, and the served
answer for a phantom DICOM equals the trained model's own answer on the training-side tensor
(no skew between how training and serving read, letterbox and normalize an image)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.data.dataset import ReadOptions
from harness.phantom.generate import PhantomConfig, generate_phantom
from harness.train.data import load_images, model_batch, read_train_val
from harness.train.run import WEIGHTS_FILENAME
from ptxplain.cli import main
from ptxplain.explain.options import ExplainOptions
from ptxplain.models.meta import META_FILENAME, ModelMeta
from ptxplain.models.registry import get_spec
from ptxplain.models.weights import load_weights
from services.torchserve import RestClient, TorchServeProcess, rest_client
from tests.conftest import free_port_config

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
def served(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Iterator[RestClient]:
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
        with rest_client(config, timeout_s=60) as client:
            yield client
    finally:
        process.stop()


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
