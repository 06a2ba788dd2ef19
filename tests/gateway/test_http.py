"""The HTTP/JSON twin on the same core, over a real uvicorn socket, against fake TorchServes."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import numpy as np
import pytest
import requests

from services.gateway import RunningGateway
from services.gateway.http_json import ExplainResponseBody, ModelsBody
from tests.conftest import wait_until
from tests.gateway.conftest import LoopThread
from tests.gateway.fakes import FakeMetadata, FakeModel, FakeTorchServe, gateway_config, png_bytes

TOKEN = "test-token"


@pytest.fixture(scope="module")
def base(loop_thread: LoopThread) -> Iterator[str]:
    fake = FakeTorchServe(
        {"fast": FakeModel(), "bad": FakeModel(item_error=3), "slow": FakeModel(delay_s=0.5)}
    )
    loop_thread.run(fake.start())
    config = gateway_config(
        {"main": (fake.target, ("fast", "bad")), "limited": (fake.target, ("slow",))},
        max_image_bytes=100_000,
        client_token=TOKEN,
        backend_overrides={"limited": {"max_in_flight": 1}},
    )
    running: RunningGateway = loop_thread.start_gateway(config, FakeMetadata())
    yield f"http://127.0.0.1:{running.http_port}"
    loop_thread.run(running.stop(0))
    loop_thread.run(fake.stop())


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def post(base: str, data: bytes, query: str = "", **headers: str) -> requests.Response:
    return requests.post(
        f"{base}/v1/explain{query}", data=data, headers={**AUTH, **headers}, timeout=10
    )


def test_raw_image_body_gives_every_result_as_json(base: str) -> None:
    answer = post(
        base,
        png_bytes(),
        "?models=fast&models=bad&methods=gradcam",
        **{"Content-Type": "image/png"},
    )
    assert answer.status_code == 200
    body = ExplainResponseBody.model_validate(answer.json())  # the OpenAPI schema holds
    assert answer.headers["x-request-id"] == body.request_id
    fast, bad = body.results
    assert (fast.status.code, bad.status.code, bad.status.http_status) == (
        "OK",
        "INVALID_ARGUMENT",
        400,
    )
    assert fast.result is not None and fast.result.label == "no_pneumothorax" and not fast.trained
    item = fast.result.maps[0]
    values = np.frombuffer(base64.b64decode(item.data), dtype="<f2").reshape(item.shape)
    assert item.encoding == "float16" and values.shape == (4, 4) and values.max() == 1.0
    assert fast.result.geometry is not None and fast.result.geometry["original_height"] == 40


def test_base64_json_body_and_png_maps(base: str) -> None:
    body = {"image": base64.b64encode(png_bytes()).decode(), "models": ["fast"]}
    answer = requests.post(
        f"{base}/v1/explain?map_encoding=png", json=body, headers=AUTH, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert [r["model"] for r in answer.json()["results"]] == ["fast"]


@pytest.mark.parametrize(
    ("data", "query", "status", "needle"),
    [
        (b"", "", 400, "empty image"),
        (b"not an image at all", "", 400, "not a PNG, JPEG or DICOM"),
        (png_bytes() + bytes(100_001 - len(png_bytes())), "", 413, "cap of 100000 bytes"),
        (png_bytes(), "?models=fast,ghost", 400, "unknown model 'ghost'"),
        (png_bytes(), "?map_encoding=float32", 400, "map_encoding"),
        (png_bytes(), "?models=bad", 400, "every model failed: bad: bad item"),
    ],
)
def test_errors_map_to_http_statuses(
    base: str, data: bytes, query: str, status: int, needle: str
) -> None:
    answer = post(base, data, query)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert (
        needle in error["message"] and answer.json()["request_id"] == answer.headers["x-request-id"]
    )


def test_over_the_bound_answers_429_at_once(base: str) -> None:
    import threading
    import time

    holder = threading.Thread(target=lambda: post(base, png_bytes(), "?models=slow"))
    holder.start()
    held = 'ptxplain_gateway_in_flight{backend="limited"} 1.0'
    wait_until(lambda: held in requests.get(f"{base}/metrics", timeout=5).text, 10, held)
    started = time.perf_counter()
    answer = post(base, png_bytes(), "?models=slow")
    elapsed = time.perf_counter() - started
    holder.join()
    assert answer.status_code == 429 and elapsed < 0.2
    assert answer.json()["error"]["code"] == "RESOURCE_EXHAUSTED"


def test_bearer_token_guards_the_api_but_not_the_probes(base: str) -> None:
    answer = requests.post(f"{base}/v1/explain", data=png_bytes(), timeout=10)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "UNAUTHENTICATED"
    assert requests.get(f"{base}/v1/models", timeout=5).status_code == 401
    assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(f"{base}/readyz", timeout=5).status_code == 200


def test_models_metrics_and_openapi(base: str) -> None:
    models = ModelsBody.model_validate(
        requests.get(f"{base}/v1/models", headers=AUTH, timeout=5).json()
    )
    assert {m.name for m in models.models} == {"fast", "bad", "slow"}
    metrics = requests.get(f"{base}/metrics", timeout=5)
    assert "ptxplain_gateway_requests_total" in metrics.text and metrics.headers[
        "content-type"
    ].startswith("text/plain")
    spec = requests.get(f"{base}/openapi.json", timeout=5).json()
    assert {"/v1/explain", "/v1/models", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    content = spec["paths"]["/v1/explain"]["post"]["requestBody"]["content"]
    assert {"application/octet-stream", "application/json", "application/dicom"} <= set(content)
    assert (
        requests.get(f"{base}/nowhere", headers=AUTH, timeout=5).json()["error"]["code"]
        == "NOT_FOUND"
    )


def test_readyz_is_503_when_no_model_is_ready(loop_thread: LoopThread) -> None:
    config = gateway_config({"main": ("127.0.0.1:1", ("down",))})
    running = loop_thread.start_gateway(config, FakeMetadata(ready={"down": False}))
    try:
        answer = requests.get(f"http://127.0.0.1:{running.http_port}/readyz", timeout=5)
        assert answer.status_code == 503
        assert answer.json() == {"ready": False, "models": [], "unlisted_backends": []}
        no_model = requests.post(
            f"http://127.0.0.1:{running.http_port}/v1/explain", data=png_bytes(), timeout=5
        )
        assert (
            no_model.status_code == 503
            and "no model is ready" in no_model.json()["error"]["message"]
        )
    finally:
        loop_thread.run(running.stop(0))
