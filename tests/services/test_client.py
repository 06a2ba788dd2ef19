"""The clients against an in-process fake of TorchServe's gRPC API (one layer: the client).

The real server is exercised in test_torchserve_live.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import requests

from ptxplain.errors import (
    AuthError,
    BackendError,
    ImageTooLargeError,
    InvalidInputError,
    UnknownModelError,
)
from ptxplain.explain.options import ExplainOptions
from ptxplain.torchserve import inference_pb2, inference_pb2_grpc
from ptxplain.v1 import result_pb2
from services.gateway.backend import Backend, encode_predictions_request
from services.gateway.config import BackendConfig
from services.torchserve import GrpcClient, TokenSource
from services.torchserve.client import _rest_error
from tests.services.test_auth import write_keys


class FakeInference(inference_pb2_grpc.InferenceAPIsServiceServicer):
    """Checks the bearer key against the key file, echoes options into the result."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self.seen_keys: list[str] = []
        self.inputs: list[dict[str, bytes]] = []

    def _authorize(self, context: grpc.ServicerContext) -> None:
        sent = dict(context.invocation_metadata()).get("authorization", "")
        self.seen_keys.append(sent)
        valid = json.loads(self.key_file.read_text())["inference"]["key"]
        if sent != f"Bearer {valid}":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "Token Authorization failed.")

    def Ping(self, request, context):
        self._authorize(context)
        return inference_pb2.TorchServeHealthResponse(health='{"status": "Healthy"}')

    def Predictions(self, request, context):
        self._authorize(context)
        if request.model_name == "missing":
            context.abort(grpc.StatusCode.NOT_FOUND, "Model not found: missing")
        self.inputs.append(dict(request.input))
        result = result_pb2.ExplainResult(model=request.model_name, logits=[0.5, -0.5])
        if request.input["data"] == b"bad":
            result.status.code, result.status.http_status = 3, 400
        return inference_pb2.PredictionResponse(prediction=result.SerializeToString())


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[str, FakeInference, TokenSource]]:
    key_file = tmp_path / "key_file.json"
    write_keys(key_file, "k1")
    servicer = FakeInference(key_file)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    inference_pb2_grpc.add_InferenceAPIsServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer, TokenSource(key_file, "http://127.0.0.1:9")
    server.stop(grace=None)


def test_options_become_strings() -> None:
    options = ExplainOptions(methods=("gradcam", "layercam"), target="1", normalize=False)
    assert options.to_inputs() == {
        "methods": "gradcam,layercam",
        "target": "1",
        "normalize": "false",
    }
    assert ExplainOptions().to_inputs() == {}


def test_grpc_predict_sends_image_options_and_token(
    fake: tuple[str, FakeInference, TokenSource],
) -> None:
    target, servicer, token = fake
    with GrpcClient(target, token, timeout_s=5) as client:
        good = client.predict("m", b"png", ExplainOptions(map_size="16x8"))
        bad = client.predict("m", b"bad")
        assert client.ping() == {"status": "Healthy"}
    assert (good.ok, good.http_status, list(good.result.logits)) == (True, 200, [0.5, -0.5])
    assert (bad.ok, bad.http_status, bad.result.status.code) == (False, 400, 3)
    assert servicer.inputs[0] == {"data": b"png", "map_size": b"16x8"}
    assert set(servicer.seen_keys) == {"Bearer k1"}


def test_grpc_client_follows_a_rotated_key(fake: tuple[str, FakeInference, TokenSource]) -> None:
    target, servicer, token = fake
    with GrpcClient(target, token, timeout_s=5) as client:
        client.predict("m", b"png")
        write_keys(token.key_file, "k2")  # rotated behind the client's back
        assert client.predict("m", b"png").ok
    assert servicer.seen_keys == ["Bearer k1", "Bearer k1", "Bearer k2"]


def test_grpc_errors_map_to_ptxplain_errors(fake: tuple[str, FakeInference, TokenSource]) -> None:
    target, _, token = fake
    with GrpcClient(target, token, timeout_s=5, max_send_bytes=1000) as client:
        with pytest.raises(UnknownModelError, match="Model not found"):
            client.predict("missing", b"png")
        with pytest.raises(ImageTooLargeError):
            client.predict("m", b"x" * 2000)
    with GrpcClient(target, None, timeout_s=5) as anonymous, pytest.raises(AuthError):
        anonymous.predict("m", b"png")


def test_unreachable_server_is_a_backend_error() -> None:
    with GrpcClient("127.0.0.1:9", None, timeout_s=2) as client, pytest.raises(BackendError):
        client.predict("m", b"png")


def test_gateway_backend_predicts_concurrently_and_refreshes(
    fake: tuple[str, FakeInference, TokenSource],
) -> None:
    """The async path (the gateway's Backend) on the same fake: concurrent calls, a new key."""
    target, servicer, token = fake
    config = BackendConfig(
        name="b", grpc=target, management="http://127.0.0.1:9", key_file=token.key_file
    )
    shared = encode_predictions_request({"data": b"png"})

    async def scenario() -> list[bool]:
        backend = Backend(config)
        try:
            first = await backend.predict("m", shared, 5)
            write_keys(token.key_file, "k9")
            rest = await asyncio.gather(*(backend.predict("m", shared, 5) for _ in range(3)))
        finally:
            await backend.close()
        return [r.error is None and bool(r.raw) for r in (first, *rest)]

    assert asyncio.run(scenario()) == [True] * 4
    assert servicer.seen_keys[-1] == "Bearer k9"


def _answer(status: int, body: dict) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    return response


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, UnknownModelError),
        (413, ImageTooLargeError),
        (400, InvalidInputError),
        (503, BackendError),
    ],
)
def test_rest_errors_map_to_ptxplain_errors(status: int, error: type) -> None:
    mapped = _rest_error(_answer(status, {"code": status, "message": "said TorchServe"}), "m")
    assert type(mapped) is error and "said TorchServe" in mapped.message and mapped.model == "m"
