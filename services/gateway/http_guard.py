"""What the HTTP twin checks before any route sees a request, and the limits of its server.

:class:`HttpGuard` is an ASGI middleware, so it covers every route, including apps mounted on
the twin later:

* the ``Host`` header must name a served host (``allowed_hosts``; by default the loopback names
  when the gateway listens on loopback): a page the user visits cannot reach the token-less
  local API through a rebound DNS name;
* a state-changing request (anything but GET / HEAD / OPTIONS) that carries an ``Origin`` must
  come from the same origin (scheme, host and port of the request) or an ``allowed_origins``
  entry; ``Origin: null`` and ``Sec-Fetch-Site: cross-site`` are refused. A cross-origin
  ``text/plain`` POST needs no preflight, so the server itself must refuse it;
* a request body must arrive within ``body_timeout_s`` per chunk (else 408).

:func:`guarded_protocol` is uvicorn's h11 protocol with a header deadline: a connection that has
not sent a complete request head within ``header_timeout_s`` of its first byte (or of opening) is
closed. Keep-alive idling and the connection cap are uvicorn's own settings (runner.py).
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import h11
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from ptxplain.errors import InvalidInputError, PermissionDeniedError, PtxplainError, quoted
from services.gateway.http_json import error_body
from services.gateway.logs import request_id_var

__all__ = ["HttpGuard", "guarded_protocol"]

_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _host_name(host: str) -> str:
    """``host[:port]`` / ``[v6]:port`` -> the lower-case name without the port."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _origin(value: str) -> str:
    parts = urllib.parse.urlsplit(value.strip().lower())
    return f"{parts.scheme}://{parts.netloc}"


class HttpGuard:
    """Host allowlist, Origin checks and the body deadline, for every route."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hosts: tuple[str, ...],
        origins: tuple[str, ...],
        body_timeout_s: float,
    ) -> None:
        self.app = app
        self.hosts = {h.lower().strip("[]") for h in hosts}
        self.origins = {_origin(o) for o in origins}
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope, Headers(scope=scope))
        if refusal is not None:
            body = error_body(refusal.code, refusal.message, "", request_id_var.get())
            await JSONResponse(body, status_code=refusal.http_status)(scope, receive, send)
            return
        await self.app(scope, self._timed(receive), send)

    def _refusal(self, scope: Scope, headers: Headers) -> PtxplainError | None:
        host = headers.get("host", "")
        if "*" not in self.hosts and _host_name(host) not in self.hosts:
            return PermissionDeniedError(
                f"Host {quoted(host)} is not served here; allowed: {', '.join(sorted(self.hosts))}"
                " (gateway setting allowed_hosts)"
            )
        if scope["method"] in _SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if headers.get("sec-fetch-site") == "cross-site" and origin is None:
            return PermissionDeniedError("cross-site requests may not change state here")
        if origin is None:
            return None
        own = f"{scope.get('scheme', 'http')}://{host.strip().lower()}"
        if _origin(origin) in (own, *self.origins) and origin.strip() != "null":
            return None
        return PermissionDeniedError(
            f"Origin {quoted(origin)} may not send {scope['method']} requests here; only the "
            "same origin (gateway setting allowed_origins adds others)"
        )

    def _timed(self, receive: Receive) -> Receive:
        timeout = self.body_timeout_s

        async def timed() -> Message:
            try:
                return await asyncio.wait_for(receive(), timeout=timeout)
            except TimeoutError:
                error = InvalidInputError(f"the request body stalled for over {timeout:g} s")
                error.http = 408
                raise error from None

        return timed


def guarded_protocol(header_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing connections whose request head is slower than the limit."""

    class HeaderDeadlineProtocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._head_timer is None and self.conn.their_state is h11.IDLE:
                self._arm()  # a new request head starts: it has header_timeout_s to complete
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE and self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _arm(self) -> None:
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_overdue)

        def _head_overdue(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

    return HeaderDeadlineProtocol
