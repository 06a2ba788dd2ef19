"""A backend whose models cannot be listed is named, with the reason, everywhere it matters.

The real management client (:class:`TorchServeMetadata`) against a small management API on
loopback that checks TorchServe-style bearer keys: one test per reason (key file missing,
key file unreadable, the token refused, unreachable, an error answer), then what a running
gateway shows (ListModels, ``/v1/models``, ``/readyz``, gRPC health, the metric, the log).
"""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests

from ptxplain.v1 import explainer_pb2 as epb
from ptxplain.v1 import explainer_pb2_grpc
from services.gateway import ExplainerClient
from services.gateway import catalog as catalog_module
from services.gateway.backend import Backend
from services.gateway.catalog import Catalog, TorchServeMetadata
from services.gateway.config import BackendConfig
from services.gateway.grpc_service import BACKEND_HEALTH_PREFIX
from services.torchserve import auth, client  # noqa: F401 - imported before a test drops root
from tests.deploy.support import free_port
from tests.gateway.conftest import LoopThread
from tests.gateway.fakes import gateway_config

KEYS = {"management": "m-key", "inference": "i-key", "API": "api-key"}


class _Management(http.server.BaseHTTPRequestHandler):
    """``GET /models`` for the management key; 0.12's 400 InvalidKeyException otherwise."""

    status = 200

    def do_GET(self) -> None:
        if self.path.startswith("/token"):
            self._answer(403, {"code": 403, "type": "InvalidKeyException"})
        elif self.status != 200:
            self._answer(self.status, {"code": self.status, "message": "broken"})
        elif self.headers.get("Authorization") != f"Bearer {KEYS['management']}":
            self._answer(400, {"code": 400, "type": "InvalidKeyException", "message": "bad"})
        elif self.path == "/models":
            self._answer(200, {"models": [{"modelName": "resnet18"}]})
        else:
            ready = {
                "modelName": "resnet18",
                "modelVersion": "1.0",
                "workers": [{"status": "READY"}],
            }
            self._answer(200, [ready])

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def management() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Management)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        _Management.status = 200


def _url(server: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def _key_file(path: Path, keys: dict[str, str] = KEYS) -> Path:
    path.write_text(json.dumps({kind: {"key": key} for kind, key in keys.items()}))
    return path


def _catalog(management_url: str, key_file: Path | None) -> Catalog:
    config = BackendConfig(
        name="ts", grpc="127.0.0.1:9", management=management_url, models=("all",), key_file=key_file
    )
    return Catalog([Backend(config)], TorchServeMetadata(timeout_s=5.0))


def _unlisted_after_refresh(catalog: Catalog) -> list[tuple[str, str]]:
    asyncio.run(catalog.refresh())
    return [(u.backend, u.reason) for u in catalog.unlisted()]


def test_a_listed_backend_is_not_named(management, tmp_path: Path) -> None:
    catalog = _catalog(_url(management), _key_file(tmp_path / "key_file.json"))
    assert _unlisted_after_refresh(catalog) == []
    assert [m.name for m in catalog.models()] == ["resnet18"]


def test_missing_key_file(management, tmp_path: Path) -> None:
    catalog = _catalog(_url(management), tmp_path / "nowhere" / "key_file.json")
    assert _unlisted_after_refresh(catalog) == [("ts", "key_file_missing")]
    assert "does not exist" in catalog.unlisted()[0].detail


def test_unreadable_key_file(management, tmp_path: Path) -> None:
    (tmp_path / "key_file.json").write_text("{not json")
    catalog = _catalog(_url(management), tmp_path / "key_file.json")
    assert _unlisted_after_refresh(catalog) == [("ts", "key_file_unreadable")]


def test_key_file_in_a_folder_the_gateway_user_cannot_enter(management, tmp_path: Path) -> None:
    """As a non-root image mounting a 0700 folder: the file exists, but cannot be opened."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    key_file = _key_file(private / "key_file.json")
    catalog = _catalog(_url(management), key_file)
    if os.geteuid() != 0:  # the folder is ours: take the read permission off the file instead
        key_file.chmod(0)
        assert _unlisted_after_refresh(catalog) == [("ts", "key_file_unreadable")]
        return
    os.seteuid(65534)  # as the image's non-root user would be (root reads every file)
    try:
        unlisted = _unlisted_after_refresh(catalog)
    finally:
        os.seteuid(0)
    assert unlisted == [("ts", "key_file_unreadable")]
    assert "Permission denied" in catalog.unlisted()[0].detail


def test_management_api_refusing_the_token(management, tmp_path: Path) -> None:
    wrong = _key_file(tmp_path / "key_file.json", {**KEYS, "management": "stale"})
    catalog = _catalog(_url(management), wrong)
    assert _unlisted_after_refresh(catalog) == [("ts", "token_refused")]


def test_unreachable_backend() -> None:
    catalog = _catalog(f"http://127.0.0.1:{free_port()}", None)
    assert _unlisted_after_refresh(catalog) == [("ts", "unreachable")]


def test_management_api_answering_an_error(management, tmp_path: Path) -> None:
    _Management.status = 500
    catalog = _catalog(_url(management), _key_file(tmp_path / "key_file.json"))
    assert _unlisted_after_refresh(catalog) == [("ts", "management_error")]
    assert "answered 500" in catalog.unlisted()[0].detail


def test_warning_is_rate_limited_and_recovery_is_logged(
    management, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "key_file.json"
    catalog = _catalog(_url(management), key_file)
    caplog.set_level(logging.INFO, logger=catalog_module.__name__)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    for _ in range(3):
        _unlisted_after_refresh(catalog)
    assert len(warnings()) == 1 and "key_file_missing" in warnings()[0]
    _key_file(key_file, {**KEYS, "management": "stale"})  # a new reason: warned at once
    _unlisted_after_refresh(catalog)
    assert len(warnings()) == 2 and "token_refused" in warnings()[1]
    monkeypatch.setattr(catalog_module, "WARN_EVERY_S", 0.0)  # the interval has passed
    _unlisted_after_refresh(catalog)
    assert len(warnings()) == 3
    _key_file(key_file)
    assert _unlisted_after_refresh(catalog) == []
    assert any("lists its models again" in r.getMessage() for r in caplog.records)


def test_running_gateway_names_the_backend_everywhere(
    loop_thread: LoopThread, tmp_path: Path
) -> None:
    """ListModels, /v1/models, /readyz, gRPC health and the metric, key file missing."""
    missing = tmp_path / "run" / "key_file.json"
    config = gateway_config(
        {"ts": ("127.0.0.1:9", ("all",))}, backend_overrides={"ts": {"key_file": missing}}
    )
    running = loop_thread.start_gateway(config, TorchServeMetadata(timeout_s=5.0))
    http = f"http://127.0.0.1:{running.http_port}"
    expected = {"backend": "ts", "reason": "key_file_missing"}
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}") as channel:
            listed = explainer_pb2_grpc.ExplainerStub(channel).ListModels(
                epb.ListModelsRequest(), timeout=10
            )
        assert list(listed.models) == []
        assert [(u.backend, u.reason) for u in listed.unlisted_backends] == [
            ("ts", "key_file_missing")
        ]
        assert str(missing) in listed.unlisted_backends[0].detail
        models = requests.get(f"{http}/v1/models", timeout=10).json()
        assert models["models"] == [] and models["unlisted_backends"][0].items() >= expected.items()
        ready = requests.get(f"{http}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["unlisted_backends"][0].items() >= expected.items()
        with ExplainerClient(f"127.0.0.1:{running.grpc_port}") as client:
            assert client.health(f"{BACKEND_HEALTH_PREFIX}ts") == "NOT_SERVING"
        metrics = requests.get(f"{http}/metrics", timeout=10).text
        assert (
            'ptxplain_gateway_backend_unlisted{backend="ts",reason="key_file_missing"} 1.0'
            in metrics
        )
        assert 'ptxplain_gateway_backend_unlisted{backend="ts",reason="unreachable"} 0.0' in metrics
    finally:
        loop_thread.run(running.stop(0))
