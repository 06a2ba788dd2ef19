"""The Open Inference Protocol (REST and gRPC) against a fake TorchServe, called with the real
tritonclient (its HTTP and gRPC clients, in their own process) and with plain requests."""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import requests

from ptxplain.oip import grpc_predict_v2_pb2 as opb
from ptxplain.oip import grpc_predict_v2_pb2_grpc as ogrpc
from services.gateway import RunningGateway
from services.gateway.oip import pack_bytes, unpack_bytes
from tests.gateway.conftest import LoopThread
from tests.gateway.fakes import FakeMetadata, FakeModel, FakeTorchServe, gateway_config, png_bytes
from tests.gateway.triton import triton_calls

TOKEN = "oip-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@dataclasses.dataclass
class Stack:
    running: RunningGateway
    fake: FakeTorchServe

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.running.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.running.grpc_port}"


@pytest.fixture(scope="module")
def stack(loop_thread: LoopThread) -> Iterator[Stack]:
    fake = FakeTorchServe({"fast": FakeModel(), "bad": FakeModel(item_error=3)})
    loop_thread.run(fake.start())
    config = gateway_config(
        {"main": (fake.target, ("fast", "bad"))}, max_image_bytes=100_000, client_token=TOKEN
    )
    running = loop_thread.start_gateway(config, FakeMetadata())
    yield Stack(running, fake)
    loop_thread.run(running.stop(0))
    loop_thread.run(fake.stop())


def test_bytes_tensors_round_trip() -> None:
    elements = [b"", b"\x00\x01", b"png" * 100]
    assert unpack_bytes(pack_bytes(elements)) == elements


HEALTH_AND_METADATA = [
    {"op": "live"},
    {"op": "ready"},
    {"op": "model_ready", "model": "fast"},
    {"op": "server_metadata"},
    {"op": "model_metadata", "model": "fast"},
]


def test_tritonclient_http_health_metadata_and_infer(stack: Stack) -> None:
    infer = {"op": "infer", "model": "fast", "parameters": {"target": "0"}}
    live, ready, model_ready, server, model, result = triton_calls(
        "http", stack.http, [*HEALTH_AND_METADATA, infer], image=png_bytes(), headers=AUTH
    )
    assert live.ok and ready.ok and model_ready.ok
    assert server.ok["name"] == "ptxplain" and "binary_tensor_data" in server.ok["extensions"]
    assert model.ok["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [1]}]
    assert [o["name"] for o in model.ok["outputs"]] == ["logits", "probabilities", "gradcam"]
    assert result.arrays["logits"].tolist() == [[0.25, -0.5]]
    assert result.arrays["probabilities"].dtype == np.float32
    heat = result.arrays["gradcam"]
    assert heat.shape == (1, 4, 4) and heat.dtype == np.float16  # the fake answers float16
    np.testing.assert_allclose(heat[0], np.linspace(0, 1, 16).reshape(4, 4), atol=1e-3)
    parameters = result.response["parameters"]
    assert (parameters["status"], parameters["label"]) == ("OK", "no_pneumothorax")
    assert parameters["threshold"] == 0.5 and parameters["original_height"] == 40
    options = dict(stack.fake.calls[-1][1])
    assert options["target"] == b"0" and options["map_encoding"] == b"float32"


def test_tritonclient_http_json_outputs(stack: Stack) -> None:
    call = {"op": "infer", "model": "fast", "outputs": ["probabilities"], "binary": False}
    (result,) = triton_calls("http", stack.http, [call], image=png_bytes(), headers=AUTH)
    assert [o["name"] for o in result.response["outputs"]] == ["probabilities"]
    assert "data" in result.response["outputs"][0]  # JSON numbers, not binary
    np.testing.assert_allclose(result.arrays["probabilities"], [[0.679, 0.321]], rtol=1e-6)


def test_tritonclient_grpc_health_metadata_and_infer(stack: Stack) -> None:
    infer = {"op": "infer", "model": "fast", "parameters": {"normalize": True}}
    live, ready, model_ready, server, model, result = triton_calls(
        "grpc", stack.grpc, [*HEALTH_AND_METADATA, infer], image=png_bytes(), headers=AUTH
    )
    assert live.ok and ready.ok and model_ready.ok
    assert server.ok["name"] == "ptxplain" and model.ok["platform"] == "pytorch"
    assert result.arrays["logits"].tolist() == [[0.25, -0.5]]
    assert result.arrays["gradcam"].shape == (1, 4, 4)
    parameters = result.response["parameters"]
    assert parameters["status"] == {"string_param": "OK"}
    assert parameters["positive"] == {"bool_param": False}
    assert dict(stack.fake.calls[-1][1])["normalize"] == b"true"


def test_probes_need_no_token_but_the_rest_does(stack: Stack) -> None:
    for transport, url in (("http", stack.http), ("grpc", stack.grpc)):
        live, ready, metadata = triton_calls(
            transport, url, [{"op": "live"}, {"op": "ready"}, HEALTH_AND_METADATA[4]]
        )
        assert live.ok and ready.ok
        assert metadata.error is not None and "bearer token" in metadata.error["message"]


def test_fanout_model_answers_every_model_and_names_failures(stack: Stack) -> None:
    calls = [{"op": "infer", "model": "all"}, {"op": "model_metadata", "model": "all"}]
    result, meta = triton_calls("grpc", stack.grpc, calls, image=png_bytes(), headers=AUTH)
    names = [o["name"] for o in result.response["outputs"]]
    assert names == ["fast/logits", "fast/probabilities", "fast/gradcam"]
    parameters = result.response["parameters"]
    assert parameters["bad/status"] == {"string_param": "INVALID_ARGUMENT"}
    assert parameters["bad/message"] == {"string_param": "bad item"}
    assert meta.ok["platform"] == "ensemble" and len(meta.ok["outputs"]) == 6


def test_errors_follow_the_protocol_over_http(stack: Stack) -> None:
    (unauthenticated,) = triton_calls(
        "http", stack.http, [{"op": "infer", "model": "fast"}], image=png_bytes()
    )
    assert unauthenticated.error is not None and unauthenticated.error["status"] == "401"
    base = f"http://{stack.http}/v2/models"
    for path, body, status, words in (
        ("/ghost/infer", {"inputs": []}, 400, "unknown model 'ghost'"),
        ("/bad/infer", _json_request(png_bytes()), 400, "bad item"),
        ("/fast/infer", {**_json_request(b"GIF89a"), "id": "x"}, 400, "not a PNG"),
        ("/fast/infer", {**_json_request(png_bytes()), "parameters": {"colour": 1}}, 400, "colour"),
        ("/fast/infer", {"inputs": "nope"}, 400, "not an inference request"),
    ):
        answer = requests.post(base + path, json=body, headers=AUTH, timeout=10)
        assert answer.status_code == status, answer.text
        assert set(answer.json()) == {"error"} and words in answer.json()["error"]
    form = b'--b\r\nContent-Disposition: form-data; name="data"\r\n\r\nx\r\n--b--\r\n'
    # a form upload sent without its multipart header gets a hint
    answer = requests.post(f"{base}/fast/infer", data=form, headers=AUTH, timeout=10)
    assert answer.status_code == 400 and "curl -F data=@image.png" in answer.json()["error"]
    missing = requests.get(f"{base}/fast/nothing", headers=AUTH, timeout=10)
    assert missing.status_code == 404 and set(missing.json()) == {"error"}


def test_errors_follow_the_protocol_over_grpc(stack: Stack) -> None:
    with grpc.insecure_channel(stack.grpc) as channel:
        stub = ogrpc.GRPCInferenceServiceStub(channel)
        request = opb.ModelInferRequest(model_name="fast")
        request.inputs.add(name="image", datatype="FP32", shape=[1])
        request.raw_input_contents.append(struct.pack("<f", 1.0))
        with pytest.raises(grpc.RpcError) as failed:
            stub.ModelInfer(request, metadata=tuple(AUTH.items()))
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "must be BYTES" in str(failed.value.details())
        with pytest.raises(grpc.RpcError) as unauthenticated:
            stub.ModelMetadata(opb.ModelMetadataRequest(name="fast"))
        assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _json_request(image: bytes) -> dict[str, object]:
    import base64

    encoded = base64.b64encode(image).decode()
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [encoded]}]}


def test_json_body_with_base64_bytes_answers_json(stack: Stack) -> None:
    answer = requests.post(
        f"http://{stack.http}/v2/models/fast/versions/0.1.0/infer",
        json={**_json_request(png_bytes()), "id": "r1"},
        headers=AUTH,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["id"], body["model_version"]) == ("r1", "0.1.0")
    logits = next(o for o in body["outputs"] if o["name"] == "logits")
    assert (logits["datatype"], logits["shape"], logits["data"]) == ("FP32", [1, 2], [0.25, -0.5])


def test_multipart_upload_on_the_v2_route(stack: Stack) -> None:
    answer = requests.post(
        f"http://{stack.http}/v2/models/fast/infer",
        files={"data": ("chest.png", png_bytes(), "image/png")},
        data={"target": "1"},
        headers=AUTH,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.content)["parameters"]["status"] == "OK"
    assert dict(stack.fake.calls[-1][1])["target"] == b"1"


def test_metrics_have_the_standard_collectors_build_info_and_stage_histograms(
    stack: Stack,
) -> None:
    requests.post(
        f"http://{stack.http}/v2/models/fast/infer",
        json=_json_request(png_bytes()),
        headers=AUTH,
        timeout=10,
    ).raise_for_status()
    text = requests.get(f"http://{stack.http}/metrics", timeout=10).text
    assert 'method="POST /v2/models/{model}/infer"' in text  # the route, not the model name
    lines = text.splitlines()
    for prefix in ("process_cpu_seconds_total ", "process_resident_memory_bytes ", "python_info{"):
        assert any(line.startswith(prefix) for line in lines), prefix
    assert any(line.startswith("python_gc_objects_collected_total{") for line in lines)
    build = next(line for line in lines if line.startswith("ptxplain_gateway_build_info{"))
    assert 'version="' in build and 'torch="' in build and 'torchserve="' in build
    for stage in ("queue", "backend", "gateway", "decode", "forward_cam", "encode"):
        bucket = f'ptxplain_gateway_stage_seconds_bucket{{le="+Inf",model="fast",stage="{stage}"}}'
        assert any(line.startswith(bucket) for line in lines), stage
