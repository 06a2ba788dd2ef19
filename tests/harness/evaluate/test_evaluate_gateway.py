"""`ptxplain evaluate` end to end: a phantom test split through the real gateway (gRPC and
HTTP) in front of the session's real TorchServe; and a gateway that is not there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.evaluate.client import GrpcGatewayClient, HttpGatewayClient
from harness.phantom.generate import PhantomConfig, generate_phantom
from ptxplain.cli import main
from ptxplain.errors import BackendError
from services.gateway import RunningGateway
from tests.harness.evaluate.live_gateway import gateway_for

MODELS = ("resnet18", "vit_s16")


@pytest.fixture(scope="module")
def gateway(torchserve: Any) -> Iterator[RunningGateway]:
    with gateway_for(torchserve.config) as running:
        yield running


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("e2e") / "phantom"
    generate_phantom(PhantomConfig(n=8, seed=3, size=96), folder)
    assert main(["data", "split", str(folder), "--fractions", "0", "0", "1"]) == 0
    return folder


@pytest.mark.live
@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_evaluate_through_the_real_gateway(
    gateway: RunningGateway, data: Path, tmp_path: Path, transport: str
) -> None:
    out = tmp_path / "run"
    address = (
        f"127.0.0.1:{gateway.grpc_port}"
        if transport == "grpc"
        else f"http://127.0.0.1:{gateway.http_port}"
    )
    argv = [
        "evaluate",
        "--data",
        str(data),
        "--out",
        str(out),
        "--gateway-http" if transport == "http" else "--gateway",
        address,
        "--models",
        ",".join(MODELS),
        "--n-boot",
        "50",
        "--concurrency",
        "2",
        "--no-progress",
        "--robustness-images",
        "1" if transport == "grpc" else "0",
    ]
    assert main([*argv, *(["--http"] if transport == "http" else [])]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["synthetic"] and metrics["coverage"]["complete"]
    assert list(metrics["models"]) == list(MODELS)
    positives = metrics["positives_with_mask"]
    for name, model in metrics["models"].items():
        assert model["classification"]["n"] == 8 and model["classification"]["missing"] == 0
        assert model["localization"]["n"] == positives > 0, name
        assert model["depth"] > 0 and model["params"] > 0 and model["flops"] > 0
        assert model["held_out"]["checked"] is False  # random-init archives carry no digests
        stages = metrics["latency"]["models"][name]["stages"]
        assert stages["forward_cam_ms"]["n"] == 8 and stages["forward_cam_ms"]["p50"] > 0
        assert stages["core_wait_ms"]["n"] == 8 and stages["core_wait_ms"]["p50"] >= 0
        assert metrics["latency"]["models"][name]["client_ms"]["p95"] > 0
    stored = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(stored) == 8
    answer = stored[0]["answers"]["resnet18"]
    assert answer["geometry"]["original_height"] == 96 and answer["map_info"]["height"] >= 1
    if transport == "grpc":
        assert metrics["robustness"]["stability"]["resnet18"]["shift 4 px"]["n"] == 1
    assert "<table>" in (out / "report.html").read_text()
    # A rerun finds everything done: nothing is sent again, nothing is duplicated.
    assert main([*argv, *(["--http"] if transport == "http" else [])]) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 8


def test_a_gateway_that_is_not_there() -> None:
    grpc_client = GrpcGatewayClient("127.0.0.1:9", timeout_s=2.0)
    with pytest.raises(BackendError, match=r"127\.0\.0\.1:9"):
        grpc_client.explain("x", b"\x89PNG")
    with pytest.raises(BackendError, match="ListModels failed"):
        grpc_client.list_models()
    grpc_client.close()
    with pytest.raises(BackendError, match=r"127\.0\.0\.1:9"):
        HttpGatewayClient("http://127.0.0.1:9", timeout_s=2.0).list_models()
