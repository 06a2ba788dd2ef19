"""services/containers/healthcheck.py against a small local HTTP server."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.containers.healthcheck import main
from tests.deploy.support import free_port


class _Server(http.server.ThreadingHTTPServer):
    status = 200
    body = b'{"status": "Healthy"}'
    seen_auth: list[str | None]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.seen_auth.append(self.headers.get("Authorization"))
        self.send_response(self.server.status)
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.seen_auth = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/ping"


def _key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key_file.json"
    keys = {"inference": {"key": "inf-key"}, "management": {"key": "m"}, "API": {"key": "a"}}
    path.write_text(json.dumps(keys))
    return path


def test_healthy_without_a_key_file(server: _Server, tmp_path: Path) -> None:
    assert main([_url(server), "--key-file", str(tmp_path / "absent.json")], env={}) == 0
    assert server.seen_auth == [None]


def test_sends_the_inference_key_when_the_key_file_exists(server: _Server, tmp_path: Path) -> None:
    assert main([_url(server), "--key-file", str(_key_file(tmp_path))], env={}) == 0
    assert server.seen_auth == ["Bearer inf-key"]


def test_sends_a_token_from_the_environment(server: _Server) -> None:
    assert main([_url(server), "--token-env", "TOKEN"], env={"TOKEN": "t0k"}) == 0
    assert server.seen_auth == ["Bearer t0k"]


def test_an_error_status_is_unhealthy(server: _Server, capsys: pytest.CaptureFixture[str]) -> None:
    server.status, server.body = 400, b'{\n  "type": "InvalidKeyException"\n}'
    assert main([_url(server)], env={}) == 1
    err = capsys.readouterr().err
    assert "400" in err and "InvalidKeyException" in err and err.count("\n") == 1


def test_no_answer_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([f"http://127.0.0.1:{free_port()}/ping", "--timeout", "2"], env={}) == 1
    assert "no answer" in capsys.readouterr().err


def test_a_broken_key_file_is_unhealthy(server: _Server, tmp_path: Path) -> None:
    broken = tmp_path / "key_file.json"
    broken.write_text("{not json")
    assert main([_url(server), "--key-file", str(broken)], env={}) == 1
    assert server.seen_auth == []
