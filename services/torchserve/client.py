"""Prediction options and results, and the REST client (gRPC clients: grpc_client.py).

Each ``predict`` sends one image with its options and returns a :class:`Prediction`: the parsed
``ptxplain.v1.ExplainResult`` and the HTTP status for that item (200, or the 4xx the handler set
for a bad item — a bad item is an answer, not an exception). Transport and server failures
raise the errors of :mod:`ptxplain.errors` (unknown model, timeout, unavailable, auth).

Every client reuses one connection pool / channel, sends the token of a shared
:class:`~services.torchserve.auth.TokenSource` and retries once after a token rejection.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import requests
from google.protobuf.message import DecodeError as ProtobufDecodeError

from ptxplain.errors import (
    AuthError,
    BackendError,
    BackendTimeoutError,
    InternalError,
    PtxplainError,
    UnknownModelError,
    error_for_http,
)
from ptxplain.explain.options import ExplainOptions
from ptxplain.v1 import result_pb2
from services.torchserve.auth import TokenSource, is_rest_rejection, token_source
from services.torchserve.config import (
    TorchServeConfig,
)

__all__ = [
    "PROTOBUF_CONTENT_TYPE",
    "Prediction",
    "RestClient",
    "parse_result",
    "rest_client",
]

PROTOBUF_CONTENT_TYPE = "application/x-protobuf"


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One item's answer."""

    result: result_pb2.ExplainResult
    http_status: int

    @property
    def ok(self) -> bool:
        return self.http_status == 200 and self.result.status.code == 0


def parse_result(body: bytes, model: str) -> result_pb2.ExplainResult:
    result = result_pb2.ExplainResult()
    try:
        result.ParseFromString(body)
    except ProtobufDecodeError as exc:
        raise InternalError(
            f"TorchServe answered bytes that are no ExplainResult: {exc}", model=model
        ) from exc
    return result


# -- REST -------------------------------------------------------------------------------------


def _rest_error(answer: requests.Response, model: str) -> PtxplainError:
    """TorchServe's own (JSON) error answers as ptxplain errors: a 404 is an unknown model (the
    URL names it), a 5xx its frontend or worker failing; the rest by the one status table."""
    try:
        detail = json.loads(answer.content).get("message", "")
    except (ValueError, AttributeError):
        detail = answer.text[:200]
    status = answer.status_code
    message = f"TorchServe answered {status}: {detail}".strip()
    if status == 404:
        return UnknownModelError(message, model=model)
    if status >= 500 and status != 504:
        return BackendError(message, model=model)
    return error_for_http(status, message, model=model)


class RestClient:
    """``POST /models/{model}/invoke`` with the raw image as body and options as query.

    Not ``/predictions/{model}``: TorchServe 0.12 drops that endpoint's query parameters (its
    handler is given only the body), so options would silently fall back to their defaults.
    ``/models/{model}/invoke`` reaches the same model and passes each query parameter on.
    """

    def __init__(
        self,
        base_url: str,
        token: TokenSource | None = None,
        timeout_s: float = 60.0,
        pool_size: int = 16,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
        self._session.mount("http://", adapter)

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        """Any call on this server, with the token sent and refreshed once if rejected."""
        sent = self.token.current() if self.token else None
        answer = self._request(method, path, sent, **kw)
        if self.token and sent and is_rest_rejection(answer.status_code, answer.content):
            answer = self._request(method, path, self.token.refresh(sent), **kw)
            if is_rest_rejection(answer.status_code, answer.content):
                raise AuthError(f"TorchServe rejected a fresh {self.token.kind} key for {path}")
        return answer

    def _request(self, method: str, path: str, key: str | None, **kw: Any) -> requests.Response:
        headers = dict(kw.get("headers") or {})
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = f"{self.base_url}{path}"
        try:
            return self._session.request(method, url, **{**kw, "headers": headers})
        except requests.Timeout as exc:
            raise BackendTimeoutError(f"TorchServe did not answer {url} in time: {exc}") from exc
        except requests.RequestException as exc:
            raise BackendError(f"cannot reach TorchServe at {url}: {exc}") from exc

    def predict(
        self,
        model: str,
        image: bytes,
        options: ExplainOptions | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Prediction:
        answer = self.request(
            "POST",
            f"/models/{model}/invoke",
            data=image,
            params=(options or ExplainOptions()).to_inputs(),
            headers={"Content-Type": "application/octet-stream"},
            timeout=timeout_s or self.timeout_s,
        )
        if answer.headers.get("Content-Type", "").startswith(PROTOBUF_CONTENT_TYPE):
            return Prediction(parse_result(answer.content, model), answer.status_code)
        raise _rest_error(answer, model)

    def ping(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        answer = self.request("GET", "/ping", timeout=timeout_s or self.timeout_s)
        if answer.status_code != 200:
            raise _rest_error(answer, "")
        return dict(answer.json())

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- factories from a config ------------------------------------------------------------------


def rest_client(
    config: TorchServeConfig, token: TokenSource | None = None, **kw: Any
) -> RestClient:
    """A REST client for ``config``'s server (a new token source unless one is shared)."""
    return RestClient(config.inference_url, token or token_source(config), **kw)
