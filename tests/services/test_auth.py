"""Key-file parsing and the refresh logic of TokenSource (against a fake token API)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptxplain.errors import AuthError
from services.torchserve import TokenSource, read_key_file
from services.torchserve.auth import is_rest_rejection

EXPIRY = "2026-01-02T03:04:05.123456789Z"


def write_keys(path: Path, inference: str, management: str = "mgmt1", api: str = "api1") -> None:
    path.write_text(
        json.dumps(
            {
                "management": {"key": management, "expiration time": EXPIRY},
                "inference": {"key": inference, "expiration time": EXPIRY},
                "API": {"key": api},
            }
        )
    )


def test_key_file_is_parsed(tmp_path: Path) -> None:
    write_keys(tmp_path / "key_file.json", "inf1")
    keys = read_key_file(tmp_path / "key_file.json")
    assert (keys.inference, keys.management, keys.api) == ("inf1", "mgmt1", "api1")
    assert keys.key("management") == "mgmt1"
    assert keys.inference_expires is not None and keys.inference_expires.year == 2026


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (None, "does not exist"),
        ("{not json", "cannot read"),
        ("[]", "not a JSON object"),
        ('{"inference": {"key": "a"}, "management": {"key": "b"}}', "'API'"),
        (
            '{"inference": {"key": ""}, "management": {"key": "b"}, "API": {"key": "c"}}',
            "inference",
        ),
    ],
)
def test_bad_key_files_are_auth_errors_naming_the_file(
    tmp_path: Path, content: str | None, named: str
) -> None:
    path = tmp_path / "key_file.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(AuthError, match=named) as info:
        read_key_file(path)
    assert str(path) in str(info.value)


def test_rest_rejections_include_torchserve_0_12s_400() -> None:
    invalid_key = json.dumps({"code": 400, "type": "InvalidKeyException", "message": "x"}).encode()
    assert is_rest_rejection(401, b"")
    assert is_rest_rejection(400, invalid_key)
    assert not is_rest_rejection(400, b'{"code": 400, "type": "BadRequestException"}')
    assert not is_rest_rejection(400, b"\x08\x03")  # a protobuf error body from the handler
    assert not is_rest_rejection(200, invalid_key)


class FakeTokenApi(http.server.BaseHTTPRequestHandler):
    """GET /token?type=inference with the API key rotates the inference key in the key file."""

    key_file: Path
    calls: list[str]

    def do_GET(self) -> None:
        self.calls.append(f"{self.path} {self.headers.get('Authorization')}")
        keys = read_key_file(self.key_file)
        authorized = self.headers.get("Authorization") == f"Bearer {keys.api}"
        if not (self.path.startswith("/token?type=inference") and authorized):
            self.send_response(400)
            self.end_headers()
            return
        write_keys(self.key_file, f"inf{len(self.calls) + 1}", keys.management, keys.api)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def token_api(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    key_file = tmp_path / "key_file.json"
    write_keys(key_file, "inf1")
    calls: list[str] = []
    handler = type("Api", (FakeTokenApi,), {"key_file": key_file, "calls": calls})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", key_file, calls
    server.shutdown()
    server.server_close()


def test_refresh_rereads_a_rotated_key_without_asking(
    token_api: tuple[str, Path, list[str]],
) -> None:
    url, key_file, calls = token_api
    source = TokenSource(key_file, url)
    assert source.current() == "inf1"
    write_keys(key_file, "rotated")  # someone rotated it through the management API
    assert source.refresh("inf1") == "rotated"
    assert source.bearer() == "Bearer rotated"
    assert calls == []


def test_refresh_of_an_expired_key_asks_the_token_api(
    token_api: tuple[str, Path, list[str]],
) -> None:
    url, key_file, calls = token_api
    source = TokenSource(key_file, url)
    assert source.refresh(source.current()) == "inf2"
    assert calls == ["/token?type=inference Bearer api1"]
    assert read_key_file(key_file).inference == "inf2"
    # A second caller still holding the old key gets the new one without another rotation.
    assert source.refresh("inf1") == "inf2" and len(calls) == 1


def test_refresh_fails_when_the_api_refuses(token_api: tuple[str, Path, list[str]]) -> None:
    url, key_file, calls = token_api
    source = TokenSource(key_file, url + "/elsewhere")  # the fake refuses other paths
    with pytest.raises(AuthError, match="refused a new inference key"):
        source.refresh(source.current())
    assert len(calls) == 1 and read_key_file(key_file).inference == "inf1"
