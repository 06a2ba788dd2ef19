"""The Open Inference Protocol end to end with the session's real TorchServe: the real
tritonclient over HTTP and gRPC gets the same tensors ``/v1/explain`` returns for the same
image, and curl's TorchServe-style upload (``curl -F data=@image``) works on /v1/explain, the v2
route and /predictions/{model}."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from services.gateway import BackendConfig, GatewayConfig, RunningGateway
from tests.conftest import LIVE_ARCHS, LiveTorchServe
from tests.factories.dicom_factory import make_dicom
from tests.gateway.conftest import LoopThread
from tests.gateway.fakes import png_bytes
from tests.gateway.triton import triton_calls

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def running(torchserve: LiveTorchServe, loop_thread: LoopThread) -> Iterator[RunningGateway]:
    ts = torchserve.config
    backend = BackendConfig(
        name="main",
        grpc=ts.grpc_inference_target,
        management=ts.management_url,
        models=LIVE_ARCHS,
        key_file=ts.key_file,
    )
    config = GatewayConfig(backends=(backend,), grpc_port=0, http_port=0)
    gateway = loop_thread.start_gateway(config)
    yield gateway
    loop_thread.run(gateway.stop(0))


def explain_v1(running: RunningGateway, image: bytes, query: str) -> dict[str, Any]:
    answer = requests.post(
        f"http://127.0.0.1:{running.http_port}/v1/explain?{query}", data=image, timeout=60
    )
    assert answer.status_code == 200, answer.text
    return {r["model"]: r["result"] for r in answer.json()["results"]}


def v1_map(result: dict[str, Any]) -> np.ndarray:
    item = result["maps"][0]
    values = np.frombuffer(base64.b64decode(item["data"]), dtype="<f2")
    return values.reshape(item["shape"])


IMAGE = png_bytes(96, 80, seed=3)


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_tritonclient_gets_the_tensors_v1_explain_returns(
    running: RunningGateway, transport: str
) -> None:
    v1 = explain_v1(running, IMAGE, "models=resnet18,vit_s16&map_encoding=float16")
    url = f"127.0.0.1:{running.http_port if transport == 'http' else running.grpc_port}"
    fp16 = {"map_encoding": "float16"}
    calls = [
        {"op": "infer", "model": "resnet18", "parameters": fp16},
        {"op": "infer", "model": "vit_s16", "parameters": fp16},
        {"op": "infer", "model": "resnet18"},  # FP32 maps, the protocol's default
    ]
    resnet, vit, resnet_fp32 = triton_calls(transport, url, calls, image=IMAGE)
    for name, answer in (("resnet18", resnet), ("vit_s16", vit)):
        expected = v1[name]
        assert answer.arrays["logits"].tolist() == [np.float32(expected["logits"]).tolist()]
        np.testing.assert_array_equal(
            answer.arrays["probabilities"], np.float32([expected["probabilities"]])
        )
        assert answer.arrays["gradcam"].dtype == np.float16
        np.testing.assert_array_equal(answer.arrays["gradcam"][0], v1_map(expected))
    heat = resnet_fp32.arrays["gradcam"]
    assert heat.dtype == np.float32 and heat.shape[1:] == v1_map(v1["resnet18"]).shape
    np.testing.assert_allclose(heat[0], v1_map(v1["resnet18"]), atol=1e-3)


def test_fanout_model_all_answers_every_model_over_grpc(running: RunningGateway) -> None:
    calls = [{"op": "infer", "model": "all", "parameters": {"logits_only": True}}]
    (answer,) = triton_calls("grpc", f"127.0.0.1:{running.grpc_port}", calls, image=IMAGE)
    names = {o["name"] for o in answer.response["outputs"]}
    assert names == {f"{m}/{t}" for m in LIVE_ARCHS for t in ("logits", "probabilities")}
    statuses = {m: answer.response["parameters"][f"{m}/status"] for m in LIVE_ARCHS}
    assert set(map(json.dumps, statuses.values())) == {'{"string_param": "OK"}'}


def test_model_metadata_names_the_classes_over_http(running: RunningGateway) -> None:
    (meta,) = triton_calls(
        "http", f"127.0.0.1:{running.http_port}", [{"op": "model_metadata", "model": "vit_s16"}]
    )
    assert meta.ok["outputs"][0] == {"name": "logits", "datatype": "FP32", "shape": [1, 2]}
    assert meta.ok["versions"] and meta.ok["platform"] == "pytorch"


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl on this machine")
def test_curl_form_upload_as_torchserve_users_send_it(
    running: RunningGateway, tmp_path: Path
) -> None:
    dicom = tmp_path / "chest.dcm"
    dicom.write_bytes(make_dicom(np.linspace(0, 4000, 96 * 80, dtype=np.uint16).reshape(96, 80)))
    base = f"http://127.0.0.1:{running.http_port}"

    def curl(*args: str) -> tuple[int, Any]:
        done = subprocess.run(
            ["curl", "-sS", "-w", "\n%{http_code}", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        body, _, status = done.stdout.rpartition("\n")
        return int(status), json.loads(body)

    status, v1 = curl("-F", f"data=@{dicom}", f"{base}/v1/explain?models=resnet18")
    assert status == 200 and v1["image_format"] == "dicom"
    assert v1["results"][0]["status"]["code"] == "OK"
    status, v2 = curl(
        "-F", f"data=@{dicom}", "-F", "logits_only=true", f"{base}/v2/models/resnet18/infer"
    )
    assert status == 200 and [o["name"] for o in v2["outputs"]] == ["logits", "probabilities"]
    logits = v1["results"][0]["result"]["logits"]
    np.testing.assert_array_equal(np.float32(v2["outputs"][0]["data"]), np.float32(logits))
    status, one = curl("-F", f"data=@{dicom}", f"{base}/predictions/resnet18")  # TorchServe's
    assert status == 200 and one["result"]["logits"] == logits
    form = tmp_path / "form.txt"  # a form body sent as the raw body: the hint says what to do
    form.write_bytes(
        b'--xyz\r\nContent-Disposition: form-data; name="data"; filename="chest.dcm"\r\n\r\n'
        + dicom.read_bytes()
        + b"\r\n--xyz--\r\n"
    )
    status, wrong = curl("--data-binary", f"@{form}", f"{base}/v1/explain?models=resnet18")
    assert status == 400 and "curl -F data=@image.png" in wrong["error"]["message"]
