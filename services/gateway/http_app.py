"""The HTTP/JSON twin of the gRPC API, on the same :class:`~services.gateway.fanout.Gateway` core
(FastAPI on uvicorn, in the gateway's event loop).

    POST /v1/explain   the image as the raw body (Content-Type image/png, image/jpeg,
                       application/dicom or application/octet-stream — the format is sniffed),
                       or JSON {"image": base64, "models": [...]}; options as query parameters:
                       models, methods, target, map_size, map_encoding (png | float16),
                       normalize, logits_only, timeout_s
    POST /v1/explain/stream  the same request, one NDJSON line per model as each answers
                       (services/gateway/http_stream.py)
    GET  /v1/models    the catalog
    GET  /healthz      200 while the process serves
    GET  /readyz       200 when at least one model is ready, else 503
    GET  /metrics      Prometheus text format
    GET  /openapi.json the OpenAPI document
    GET  /, /viewer/*  the browser viewer (services/gateway/viewer.py)
    GET  /docs, /redoc interactive API docs (assets served by the gateway itself: no CDN)
    /v2/...            the Open Inference Protocol (services/gateway/oip_http.py)
    POST /predictions/{model}, GET /v1/models/{model}
                       TorchServe-style calls (services/gateway/http_torchserve.py)

``POST /v1/explain`` also takes a ``multipart/form-data`` upload (``curl -F data=@chest.dcm``,
the TorchServe habit; services/gateway/http_body.py).

Errors become HTTP responses in ONE handler set (:func:`_install_error_handlers`), from
:mod:`ptxplain.errors`; under ``/v2`` the body has the protocol's shape, ``{"error": message}``.
Every response carries ``X-Request-ID``. Before any route, the guard
(services/gateway/http_guard.py) checks the Host, the Origin of state-changing requests and the
body's pace, for every route including apps mounted later. Unknown query parameters are an
error; a 405 names the allowed methods in ``Allow``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from ptxplain.errors import (
    AuthError,
    Code,
    DecodeError,
    InvalidInputError,
    InvalidOptionError,
    PtxplainError,
)
from services.gateway.edge import ExplainCall
from services.gateway.fanout import Gateway, all_failed_error
from services.gateway.http_body import is_multipart, read_body, read_form
from services.gateway.http_guard import HttpGuard
from services.gateway.http_json import (
    ErrorBody,
    ExplainBody,
    ExplainQuery,
    ExplainResponseBody,
    ModelsBody,
    error_body,
    response_json,
)
from services.gateway.http_stream import install_explain_stream
from services.gateway.http_torchserve import create_torchserve_router
from services.gateway.logs import (
    REQUEST_ID_HEADER,
    access_fields_var,
    new_request_id,
    note,
    request_id_var,
)
from services.gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from services.gateway.oip_http import OPEN_PATHS as OIP_OPEN_PATHS
from services.gateway.oip_http import PREFIX as OIP_PREFIX
from services.gateway.oip_http import create_oip_router, oip_error_body
from services.gateway.viewer import VIEWER_PATHS, mount_viewer

__all__ = ["create_http_app"]

log = logging.getLogger(__name__)
_DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
_DOCS_ASSETS = "/docs-assets"
_OPEN_PATHS = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    *VIEWER_PATHS,
    *_DOCS_PATHS,
    *OIP_OPEN_PATHS,
)
_JSON_SLACK = 64 * 1024
_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": ErrorBody} for c in (400, 401, 413, 429, 503, 504)
}
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "application/dicom": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": ExplainBody.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"data": {"type": "string", "format": "binary"}},
                    "required": ["data"],
                }
            },
        },
    }
}


def _split(values: list[str] | None) -> list[str]:
    return [name.strip() for value in values or [] for name in value.split(",") if name.strip()]


async def _image_and_models(request: Request, cap: int) -> tuple[bytes, list[str]]:
    if is_multipart(request):
        image, fields = await read_form(request, cap + _JSON_SLACK)
        if fields:
            raise InvalidInputError(
                f"multipart/form-data field {', '.join(map(repr, fields))}: POST /v1/explain "
                f"takes its options as query parameters (?models=...&methods=...)"
            )
        return image, []
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return await read_body(request, cap, "image"), []
    text = await read_body(request, cap * 4 // 3 + _JSON_SLACK, "JSON body")
    try:
        body = ExplainBody.model_validate_json(text)
        return base64.b64decode(body.image, validate=True), body.models
    except (ValueError, binascii.Error) as exc:
        raise InvalidInputError(
            f"JSON body must be {{'image': base64, 'models': [...]}}: {exc}"
        ) from exc


def create_http_app(gateway: Gateway) -> FastAPI:
    """The FastAPI app serving ``gateway``."""
    app = FastAPIOffline(
        title="ptxplain gateway",
        version="1",
        description="One image, every model: logits, label and Grad-CAM maps per model.",
        static_url=_DOCS_ASSETS,
    )
    config = gateway.config

    async def prepare(request: Request, query: ExplainQuery) -> ExplainCall:
        """The body and query of an explain call, through the edge (both explain routes)."""
        received = time.perf_counter()
        image, body_models = await _image_and_models(request, config.max_image_bytes)
        call = await gateway.prepare(
            request_id=request_id_var.get(),
            image=image,
            models=query.model_names() or body_models,
            options=query.call_options(),
            received=received,
            timeout_s=query.timeout_s,
        )
        note(models=list(call.models), image_format=call.image_format, image_bytes=call.image_bytes)
        return call

    @app.post(
        "/v1/explain",
        response_model=ExplainResponseBody,
        responses=_ERRORS,
        openapi_extra=_BODY_DOC,
    )
    async def explain(request: Request, query: Annotated[ExplainQuery, Query()]) -> Response:
        call = await prepare(request, query)
        outcomes = await gateway.explain(call)
        note(results={o.model: o.code.name for o in outcomes})
        failed = all_failed_error(outcomes)
        if failed is not None:
            raise failed
        body = response_json(call, outcomes, gateway.catalog)
        return Response(json.dumps(body), media_type="application/json")

    @app.get("/v1/models", response_model=ModelsBody, responses=_ERRORS)
    async def list_models() -> dict[str, Any]:
        await gateway.start()
        catalog = gateway.catalog
        return {
            "models": [m.to_json() for m in catalog.models()],
            "unlisted_backends": [u.to_json() for u in catalog.unlisted()],
        }

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        await gateway.start()
        ready, models = gateway.ready(), gateway.catalog.ready_models()
        unlisted = [u.to_json() for u in gateway.catalog.unlisted()]
        body = {"ready": ready, "models": models, "unlisted_backends": unlisted}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(gateway.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    install_explain_stream(app, gateway, prepare)
    mount_viewer(app)
    app.include_router(create_oip_router(gateway))
    app.include_router(create_torchserve_router(gateway))
    _install_error_handlers(app)
    _install_middleware(app, gateway)
    return app


# -- the one handler set: errors -> HTTP ----------------------------------------------------------


def _body(code: Code, message: str, model: str, path: str) -> dict[str, Any]:
    """The error body: the protocol's ``{"error": message}`` under /v2, else ptxplain's."""
    if path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/"):
        return {**oip_error_body(f"{model}: {message}" if model else message)}
    return error_body(code, message, model, request_id_var.get())


def _error_response(exc: PtxplainError, path: str = "") -> JSONResponse:
    body = _body(exc.code, exc.message, exc.model, path)
    note(error=type(exc).__name__ if isinstance(exc, DecodeError) and not exc.model else str(exc))
    return JSONResponse(body, status_code=exc.http_status)


def _install_error_handlers(app: FastAPI) -> None:
    async def ptxplain_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PtxplainError)
        return _error_response(exc, request.url.path)

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _error_response(InvalidOptionError(f"invalid request: {problems}"), request.url.path)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: Code.NOT_FOUND, 405: Code.INVALID_ARGUMENT}.get(exc.status_code, Code.UNKNOWN)
        body = _body(code, str(exc.detail), "", request.url.path)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(PtxplainError, ptxplain_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)


def _install_middleware(app: FastAPI, gateway: Gateway) -> None:
    config = gateway.config
    app.add_middleware(
        HttpGuard,
        hosts=config.served_hosts,
        origins=config.allowed_origins,
        body_timeout_s=config.http_limits.body_timeout_s,
    )
    app.add_middleware(RequestScope, gateway=gateway)  # added last: the outermost


class RequestScope:
    """Every request's id (``X-Request-ID``), the client token, a 500 for an unexpected error,
    and the access log line and metrics at the end of the response.

    A plain ASGI middleware, not Starlette's ``BaseHTTPMiddleware``: that one runs the app in a
    task of its own and re-streams every response through a memory channel. Measured with a
    fake five-model TorchServe in the same event loop (docs/gateway.md), the loop's CPU per
    ``POST /v1/explain`` fell from 2.7-4.7 ms (best 2.73) to 2.3-3.0 ms (best 2.32).
    """

    def __init__(self, app: Any, *, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        token = gateway.config.client_token
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        request_id = new_request_id(headers.get(REQUEST_ID_HEADER))
        request_id_var.set(request_id)
        fields: dict[str, Any] = {}
        access_fields_var.set(fields)
        path = scope["path"]
        status = {"code": 500, "started": False}

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.update(code=message["status"], started=True)
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (REQUEST_ID_HEADER.encode(), request_id.encode()),
                    ],
                }
            await send(message)

        offered = headers.get("authorization", "").encode()
        try:
            if (
                self.expected
                and not _open(path)
                and not hmac.compare_digest(offered, self.expected)
            ):
                refusal = AuthError(
                    "missing or wrong bearer token (header 'Authorization: Bearer …')"
                )
                await _error_response(refusal, path)(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unexpected error")
            if status["started"]:
                raise  # the answer is half sent: uvicorn closes the connection
            message = f"internal error; report request id {request_id}"
            body = _body(Code.INTERNAL, message, "", path)
            await JSONResponse(body, status_code=500)(scope, receive, send_with_id)
        finally:
            if not _open(path):
                self._account(scope, str(status["code"]), time.perf_counter() - started, fields)

    def _account(self, scope: Any, status: str, seconds: float, fields: dict[str, Any]) -> None:
        route = f"{scope['method']} {_route(scope)}"
        self.gateway.metrics.observe_request("http", route, status, seconds)
        log.info(
            "http %s %s",
            route,
            status,
            extra={
                "fields": {
                    "api": "http",
                    "method": route,
                    "code": status,
                    "duration_ms": round(seconds * 1000.0, 2),
                    **fields,
                }
            },
        )


def _open(path: str) -> bool:
    """Probes, metrics and the docs need no token."""
    return path in _OPEN_PATHS or path.startswith(_DOCS_ASSETS + "/")


def _route(scope: Any) -> str:
    """The matched route's template (``/v2/models/{model}/infer``), so labels stay bounded."""
    route = scope.get("route")
    return str(getattr(route, "path", "other"))
