"""The viewer's server side, over a real uvicorn socket against fake TorchServes: the page and
its assets served by the HTTP twin (same origin, locked down by CSP), the NDJSON stream it
reads, and the colour tables it shares with the CLI."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator

import pytest
import requests

from ptxplain.explain.colormaps import viewer_js
from services.gateway import BackendConfig, RunningGateway
from services.gateway.catalog import ModelDescription
from services.gateway.http_json import ModelResultBody
from services.gateway.viewer import ASSETS, VIEWER_PATHS
from tests.gateway.conftest import LoopThread
from tests.gateway.fakes import FakeMetadata, FakeModel, FakeTorchServe, gateway_config, png_bytes

TOKEN = "viewer-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class TrainedMetadata(FakeMetadata):
    """Models described as trained on the phantom, serving two CAM methods."""

    async def describe(
        self, backend: BackendConfig, model: str, customized: bool
    ) -> ModelDescription:
        description = await super().describe(backend, model, customized)
        extra = {"methods": ["gradcam", "hirescam"], "trained_on": "phantom (synthetic)"}
        metadata = {**(description.metadata or {}), **extra, "trained": True}
        return dataclasses.replace(description, metadata=metadata)


@pytest.fixture(scope="module")
def base(loop_thread: LoopThread) -> Iterator[str]:
    fake = FakeTorchServe(
        {
            "fast": FakeModel(),
            "slow": FakeModel(delay_s=0.6),
            "bad": FakeModel(item_error=3),
        }
    )
    loop_thread.run(fake.start())
    config = gateway_config({"main": (fake.target, ("fast", "slow", "bad"))}, client_token=TOKEN)
    running: RunningGateway = loop_thread.start_gateway(config, TrainedMetadata())
    yield f"http://127.0.0.1:{running.http_port}"
    loop_thread.run(running.stop(0))
    loop_thread.run(fake.stop())


def stream(base: str, models: str, data: bytes | None = None) -> requests.Response:
    return requests.post(
        f"{base}/v1/explain/stream?models={models}",
        data=png_bytes() if data is None else data,
        headers={**AUTH, "Content-Type": "application/octet-stream"},
        stream=True,
        timeout=10,
    )


def test_the_page_and_its_assets_are_served_without_a_token(base: str) -> None:
    page = requests.get(f"{base}/", timeout=5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/viewer/app.js">' in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    for path in VIEWER_PATHS[1:]:
        asset = requests.get(f"{base}{path}", timeout=5)
        assert asset.status_code == 200, path
        assert asset.headers["x-content-type-options"] == "nosniff"
    assert requests.get(f"{base}/viewer/viewer.py", headers=AUTH, timeout=5).status_code == 404
    # the API behind the page still needs the token
    assert requests.get(f"{base}/v1/models", timeout=5).status_code == 401


def test_the_assets_load_nothing_from_elsewhere() -> None:
    for path in ASSETS.iterdir():
        text = path.read_text()
        assert not re.search(r"https?://", text), f"{path.name} names a remote address"
        for imported in re.findall(r'from "\./([\w.]+)"', text):
            assert (ASSETS / imported).is_file(), f"{path.name} imports a missing {imported}"


def test_colour_tables_are_the_clis(base: str) -> None:
    assert (ASSETS / "colormaps.js").read_text() == viewer_js(), (
        "regenerate: python -m ptxplain.explain.colormaps services/gateway/viewer/colormaps.js"
    )


def test_stream_sends_each_model_as_it_answers(base: str) -> None:
    started = time.perf_counter()
    answer = stream(base, "slow,fast,bad")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-ndjson"
    arrivals = []
    for line in answer.iter_lines():
        arrivals.append((ModelResultBody.model_validate(json.loads(line)), time.perf_counter()))
    names = [body.model for body, _ in arrivals]
    # the failure is held back until the first success went out; the slow model comes last
    assert names == ["fast", "bad", "slow"]
    assert (arrivals[1][0].status.code, arrivals[1][0].status.message) == (
        "INVALID_ARGUMENT",
        "bad item",
    )
    assert arrivals[0][1] - started < 0.5 <= arrivals[2][1] - started
    assert arrivals[2][0].result is not None and arrivals[2][0].result.maps[0].shape == [4, 4]


def test_stream_where_every_model_fails_is_one_error_with_its_status(base: str) -> None:
    answer = stream(base, "bad")
    assert answer.status_code == 400
    assert "every model failed: bad" in answer.json()["error"]["message"]


def test_stream_refuses_a_non_image_before_asking_any_model(base: str) -> None:
    answer = stream(base, "fast", data=b"%PDF-1.7 not an image")
    assert answer.status_code == 400
    assert "PNG, JPEG or DICOM" in answer.json()["error"]["message"]


def test_models_list_the_methods_and_training_data(base: str) -> None:
    models = requests.get(f"{base}/v1/models", headers=AUTH, timeout=5).json()["models"]
    assert {m["name"] for m in models} == {"fast", "slow", "bad"}
    for model in models:
        assert model["methods"] == ["gradcam", "hirescam"]
        assert model["trained"] and model["trained_on"] == "phantom (synthetic)"
