"""A real TorchServe 0.12 running ptxplain's handler, over REST and gRPC.

The session fixture ``torchserve`` (tests/conftest.py) serves one small random-init model per
family (input 64 px, one worker, batches of up to 4 within 50 ms).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from PIL import Image

from ptxplain.errors import BackendError, ImageTooLargeError, UnknownModelError
from ptxplain.explain.options import ExplainOptions
from ptxplain.v1 import result_pb2
from services.gateway.backend import Backend, encode_predictions_request
from services.gateway.config import BackendConfig
from services.torchserve import (
    GrpcClient,
    Prediction,
    RestClient,
    TokenSource,
    grpc_client,
    management_client,
    rest_client,
)
from services.torchserve.auth import is_rest_rejection
from services.torchserve.client import PROTOBUF_CONTENT_TYPE
from tests.conftest import LIVE_ARCHS, LiveTorchServe

pytestmark = pytest.mark.live

OPTIONS = ExplainOptions(methods=("gradcam", "layercam"), map_size="16", map_encoding="float32")
OCTETS = {"Content-Type": "application/octet-stream"}


def png(seed: int = 0, height: int = 96, width: int = 80) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def assert_explained(prediction: Prediction, model: str) -> None:
    result = prediction.result
    assert prediction.ok, result.status.message
    assert (result.model, result.architecture) == (model, model)
    assert len(result.logits) == 2 and np.isfinite(result.logits).all()
    assert len(result.probabilities) == 2 and abs(sum(result.probabilities) - 1) < 1e-5
    assert [m.method for m in result.maps] == ["gradcam", "layercam"]
    for cam in result.maps:
        values = np.frombuffer(cam.data, dtype="<f4")
        assert (cam.height, cam.width, values.size) == (16, 16, 256)
        assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1


@pytest.fixture(scope="module")
def rest(torchserve: LiveTorchServe) -> Iterator[RestClient]:
    with rest_client(torchserve.config, timeout_s=60) as client:
        yield client


@pytest.fixture(scope="module")
def grpc_(torchserve: LiveTorchServe) -> Iterator[GrpcClient]:
    with grpc_client(torchserve.config, timeout_s=60) as client:
        yield client


@pytest.mark.parametrize("model", LIVE_ARCHS)
def test_rest_explains_with_every_model(rest: RestClient, model: str) -> None:
    assert_explained(rest.predict(model, png(), OPTIONS), model)


@pytest.mark.parametrize("model", LIVE_ARCHS)
def test_grpc_explains_with_every_model(grpc_: GrpcClient, model: str) -> None:
    assert_explained(grpc_.predict(model, png(), OPTIONS), model)


def test_rest_and_grpc_give_the_same_answer(rest: RestClient, grpc_: GrpcClient) -> None:
    over_rest = rest.predict("resnet18", png(5), OPTIONS).result
    over_grpc = grpc_.predict("resnet18", png(5), OPTIONS).result
    assert np.allclose(over_rest.logits, over_grpc.logits, atol=1e-5)
    assert over_rest.maps[0].data == over_grpc.maps[0].data


def test_predictions_endpoint_serves_defaults_but_drops_query_options(rest: RestClient) -> None:
    """TorchServe 0.12 passes only the body to the handler on /predictions/{model}: the
    options in the query are ignored (hence the clients use /models/{model}/invoke)."""
    answer = rest.request(
        "POST", "/predictions/resnet18?methods=layercam&map_size=16", data=png(), headers=OCTETS
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith(PROTOBUF_CONTENT_TYPE)
    result = result_pb2.ExplainResult.FromString(answer.content)
    assert [m.method for m in result.maps] == ["gradcam"]
    assert result.maps[0].height == 2  # resnet18's native grid at 64 px


def test_predictions_endpoint_takes_options_as_multipart_fields(rest: RestClient) -> None:
    """On /predictions/{model}, multipart form fields reach the handler as input keys."""
    answer = rest.request(
        "POST",
        "/predictions/resnet18",
        files={"data": ("x.png", png(), "image/png")},
        data={"methods": "layercam", "map_size": "16"},
    )
    assert answer.status_code == 200
    result = result_pb2.ExplainResult.FromString(answer.content)
    assert [m.method for m in result.maps] == ["layercam"]
    assert (result.maps[0].height, result.maps[0].width) == (16, 16)


def test_gateway_backend_serves_concurrent_calls(torchserve: LiveTorchServe) -> None:
    """The gateway's async path to TorchServe (services/gateway/backend.py), every family."""
    ts = torchserve.config
    config = BackendConfig(
        name="live",
        grpc=ts.grpc_inference_target,
        management=ts.management_url,
        key_file=ts.key_file,
    )
    inputs = {k: v.encode() for k, v in OPTIONS.to_inputs().items()}

    async def scenario() -> list[bytes | None]:
        backend = Backend(config)
        try:
            calls = [
                backend.predict(model, encode_predictions_request({**inputs, "data": png(i)}), 60)
                for i, model in enumerate(LIVE_ARCHS)
            ]
            return [reply.raw for reply in await asyncio.gather(*calls)]
        finally:
            await backend.close()

    for model, raw in zip(LIVE_ARCHS, asyncio.run(scenario()), strict=True):
        assert raw is not None
        result = result_pb2.ExplainResult.FromString(raw)
        assert_explained(Prediction(result, result.status.http_status or 200), model)


def test_bad_items_in_a_batch_get_their_own_status(
    torchserve: LiveTorchServe, rest: RestClient, grpc_: GrpcClient
) -> None:
    with management_client(torchserve.config) as management:
        pids_before = management.describe("resnet18").worker_pids
    good = [(client, png(i), None) for i, client in enumerate([rest, grpc_] * 3)]
    bad = [
        (rest, b"not an image", None),
        (grpc_, b"\x89PNG\r\n\x1a\n truncated", None),
        (rest, png(), ExplainOptions(target="7")),
        (grpc_, png(), ExplainOptions(methods=("nocam",))),
    ]
    jobs = [item for pair in zip(good, bad + bad[:2], strict=True) for item in pair]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        answers = list(pool.map(lambda job: job[0].predict("resnet18", job[1], job[2]), jobs))
    good_answers, bad_answers = answers[0::2], answers[1::2]
    assert all(a.ok and a.http_status == 200 and len(a.result.logits) == 2 for a in good_answers)
    for answer in bad_answers:
        assert (answer.http_status, answer.result.status.code) == (400, 3)
        assert answer.result.status.message and not answer.result.logits
    assert max(a.result.timings.batch_size for a in answers) > 1, "no two requests were batched"
    assert rest.predict("resnet18", png(9)).ok  # the worker keeps serving
    with management_client(torchserve.config) as management:
        assert management.describe("resnet18").worker_pids == pids_before  # and never restarted


def test_rotated_inference_key_old_clients_keep_working(torchserve: LiveTorchServe) -> None:
    config = torchserve.config
    rest_old = RestClient(config.inference_url, TokenSource(config.key_file, config.management_url))
    grpc_old = GrpcClient(
        config.grpc_inference_target, TokenSource(config.key_file, config.management_url)
    )
    with rest_old, grpc_old:
        assert rest_old.predict("efficientnet_b0", png()).ok
        assert grpc_old.predict("efficientnet_b0", png()).ok
        old_key = rest_old.token.current() if rest_old.token else ""
        new_key = TokenSource(config.key_file, config.management_url).rotate()
        assert new_key != old_key
        rejected = requests.get(
            f"{config.inference_url}/ping",
            headers={"Authorization": f"Bearer {old_key}"},
            timeout=10,
        )
        assert is_rest_rejection(rejected.status_code, rejected.content)
        assert rest_old.predict("efficientnet_b0", png()).ok
        assert grpc_old.predict("efficientnet_b0", png()).ok
        assert grpc_old.token is not None and grpc_old.token.current() == new_key


def test_unknown_model_is_an_error(rest: RestClient, grpc_: GrpcClient) -> None:
    with pytest.raises(UnknownModelError):
        rest.predict("resnet7", png())
    with pytest.raises(UnknownModelError):
        grpc_.predict("resnet7", png())


def test_request_over_the_size_cap_is_refused(torchserve: LiveTorchServe, rest: RestClient) -> None:
    config = torchserve.config
    too_big = b"\0" * (config.max_request_size + 1)
    with pytest.raises(ImageTooLargeError):
        rest.predict("resnet18", too_big)
    with grpc_client(config) as capped, pytest.raises(ImageTooLargeError):
        capped.predict("resnet18", too_big)  # refused by the client's own send cap
    roomy = GrpcClient(
        config.grpc_inference_target, capped.token, max_send_bytes=config.max_request_size * 2
    )
    # TorchServe's own cap: grpc-java resets the stream (CANCELLED), hence the client-side cap.
    with roomy, pytest.raises(BackendError, match="CANCELLED"):
        roomy.predict("resnet18", too_big)
    assert rest.predict("resnet18", png()).ok


def test_archives_without_a_device_run_where_torchserve_puts_them(
    torchserve: LiveTorchServe,
) -> None:
    import torch
    import yaml

    from handlers.archive import MODEL_CONFIG_FILENAME, read_archive_file

    for built in torchserve.archives:  # built with the default device, auto
        config = yaml.safe_load(read_archive_file(built.path, MODEL_CONFIG_FILENAME))
        assert "deviceType" not in config
    on_gpu = torch.cuda.is_available()  # TorchServe: a GPU for every worker when it has one
    with management_client(torchserve.config) as management:
        for model in LIVE_ARCHS:
            gpus = management.describe(model).worker_gpus
            assert gpus and all(gpu == on_gpu for gpu in gpus), (model, gpus)
