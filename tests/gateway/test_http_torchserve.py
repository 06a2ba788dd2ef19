"""TorchServe-style calls on the gateway's HTTP port (POST /predictions/{model}, GET
/v1/models/{model}) against a fake TorchServe."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from services.gateway import RunningGateway
from services.gateway.http_json import ModelInfoBody, ModelResultBody
from tests.gateway.conftest import LoopThread
from tests.gateway.fakes import FakeMetadata, FakeModel, FakeTorchServe, gateway_config, png_bytes


@pytest.fixture(scope="module")
def stack(loop_thread: LoopThread) -> Iterator[tuple[str, FakeTorchServe]]:
    fake = FakeTorchServe({"fast": FakeModel(), "bad": FakeModel(item_error=3)})
    loop_thread.run(fake.start())
    config = gateway_config({"main": (fake.target, ("fast", "bad"))})
    running: RunningGateway = loop_thread.start_gateway(config, FakeMetadata())
    yield f"http://127.0.0.1:{running.http_port}", fake
    loop_thread.run(running.stop(0))
    loop_thread.run(fake.stop())


def test_predictions_takes_a_raw_body_and_query_options(stack: tuple[str, FakeTorchServe]) -> None:
    base, fake = stack
    answer = requests.post(f"{base}/predictions/fast?target=1", data=png_bytes(), timeout=10)
    assert answer.status_code == 200, answer.text
    body = ModelResultBody.model_validate(answer.json())
    assert body.model == "fast" and body.status.code == "OK" and body.result is not None
    assert dict(fake.calls[-1][1])["target"] == b"1"


def test_predictions_takes_a_form_upload_with_option_fields(
    stack: tuple[str, FakeTorchServe],
) -> None:
    base, fake = stack
    answer = requests.post(
        f"{base}/predictions/fast",
        files={"data": ("chest.png", png_bytes(), "image/png")},
        data={"methods": "gradcam,hirescam", "logits_only": "true"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    sent = dict(fake.calls[-1][1])
    assert sent["methods"] == b"gradcam,hirescam" and sent["logits_only"] == b"true"


@pytest.mark.parametrize(
    ("path", "fields", "status", "words"),
    [
        ("/predictions/bad", {}, 400, "bad item"),
        ("/predictions/ghost", {}, 400, "unknown model 'ghost'"),
        ("/predictions/fast", {"colour": "red"}, 400, "unknown option(s) 'colour'"),
    ],
)
def test_predictions_errors(
    stack: tuple[str, FakeTorchServe], path: str, fields: dict[str, str], status: int, words: str
) -> None:
    answer = requests.post(
        stack[0] + path, files={"data": ("x.png", png_bytes())}, data=fields, timeout=10
    )
    assert answer.status_code == status and words in answer.json()["error"]["message"]


def test_one_models_catalog_entry(stack: tuple[str, FakeTorchServe]) -> None:
    base, _ = stack
    entry = ModelInfoBody.model_validate(requests.get(f"{base}/v1/models/fast", timeout=10).json())
    assert entry.name == "fast" and entry.architecture == "resnet18" and entry.ready
    missing = requests.get(f"{base}/v1/models/ghost", timeout=10)
    assert (
        missing.status_code == 400 and "unknown model 'ghost'" in missing.json()["error"]["message"]
    )
