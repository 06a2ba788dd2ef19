"""The HTTP twin's outermost middleware on its own (a plain ASGI app under it): the request id on
every answer, the token, a 500 for an unexpected error, and one metrics + access-log record per
request once its answer has gone out."""

from __future__ import annotations

import asyncio
import json
import logging
import types
from typing import Any

import pytest

from services.gateway.http_app import RequestScope
from services.gateway.logs import access_fields_var, note, request_id_var


class _Metrics:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, float]] = []

    def observe_request(self, api: str, route: str, status: str, seconds: float) -> None:
        self.requests.append((api, route, status, seconds))


def _scope_for(token: str | None = None) -> tuple[RequestScope, _Metrics, list[Any]]:
    metrics = _Metrics()
    gateway: Any = types.SimpleNamespace(
        config=types.SimpleNamespace(client_token=token), metrics=metrics
    )
    calls: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append((request_id_var.get(), access_fields_var.get()))
        scope["route"] = types.SimpleNamespace(path="/v1/things/{name}")
        if scope["path"] == "/boom":
            raise RuntimeError("a bug")
        await send({"type": "http.response.start", "status": 207, "headers": [(b"a", b"1")]})
        note(models="m1")
        if scope["path"] == "/half":
            raise RuntimeError("a bug after the head")
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await send({"type": "http.response.body", "body": b"end"})

    return RequestScope(app, gateway=gateway), metrics, calls


def _call(
    middleware: RequestScope, path: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return sent


def _header(start: dict[str, Any], name: bytes) -> bytes | None:
    return dict(start["headers"]).get(name)


def test_an_answer_gets_the_request_id_and_one_record_after_its_last_byte(caplog) -> None:
    middleware, metrics, calls = _scope_for()
    with caplog.at_level(logging.INFO, logger="services.gateway.http_app"):
        sent = _call(middleware, "/v1/things/x", {"X-Request-ID": "client-id-7"})
    start, *body = sent
    assert start["status"] == 207 and _header(start, b"a") == b"1"
    assert _header(start, b"x-request-id") == b"client-id-7"
    assert b"".join(m["body"] for m in body) == b"partend"
    assert calls[0][0] == "client-id-7"  # the app sees the id in its context
    [(api, route, status, seconds)] = metrics.requests
    assert (api, route, status) == ("http", "GET /v1/things/{name}", "207") and seconds >= 0
    [line] = [r for r in caplog.records if r.getMessage().startswith("http ")]
    fields = line.__dict__["fields"]
    assert fields["code"] == "207" and fields["models"] == "m1"  # what the app noted


def test_a_bad_client_id_is_replaced() -> None:
    middleware, _, _ = _scope_for()
    [start, *_] = _call(middleware, "/v1/things/x", {"X-Request-ID": "no spaces allowed"})
    given = _header(start, b"x-request-id")
    assert given and given != b"no spaces allowed" and len(given) == 32


def test_an_unexpected_error_is_a_500_that_names_the_request() -> None:
    middleware, metrics, _ = _scope_for()
    start, body = _call(middleware, "/boom")
    request_id = _header(start, b"x-request-id")
    assert start["status"] == 500 and request_id
    error = json.loads(body["body"])["error"]
    assert error["code"] == "INTERNAL" and request_id.decode() in error["message"]
    assert "a bug" not in error["message"]  # the traceback stays in the log
    assert [m[2] for m in metrics.requests] == ["500"]


def test_an_error_after_the_head_went_out_is_raised_and_counted_as_sent() -> None:
    middleware, metrics, _ = _scope_for()
    with pytest.raises(RuntimeError, match="after the head"):
        _call(middleware, "/half")
    assert [m[2] for m in metrics.requests] == ["207"]


def test_the_token_guards_the_api_but_not_the_probes() -> None:
    middleware, metrics, calls = _scope_for(token="s3cret")
    refused, body = _call(middleware, "/v1/things/x", {"Authorization": "Bearer wrong"})
    assert refused["status"] == 401 and _header(refused, b"x-request-id")
    assert json.loads(body["body"])["error"]["code"] == "UNAUTHENTICATED" and not calls
    allowed = _call(middleware, "/v1/things/x", {"Authorization": "Bearer s3cret"})
    assert allowed[0]["status"] == 207
    probe = _call(middleware, "/healthz")
    assert probe[0]["status"] == 207 and len(calls) == 2
    # Probes are neither counted nor logged; the two API calls are.
    assert [m[2] for m in metrics.requests] == ["401", "207"]
