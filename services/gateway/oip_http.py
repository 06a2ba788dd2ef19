"""The Open Inference Protocol's REST face (KServe v2) on the gateway's HTTP server.

    GET  /v2                                       server metadata
    GET  /v2/health/live | /v2/health/ready        200, or 503 when not ready
    GET  /v2/models/{model}[/versions/{v}]         model metadata
    GET  /v2/models/{model}[/versions/{v}]/ready   200, or 503 when not ready
    POST /v2/models/{model}[/versions/{v}]/infer   inference (services/gateway/oip.py)

The infer body is the protocol's JSON — a ``BYTES`` input's elements base64 in ``data`` — or,
with the binary tensor data extension (what tritonclient sends by default), a JSON header of
``Inference-Header-Content-Length`` bytes followed by the inputs' raw bytes. Outputs come back
in binary when the request asks (``binary_data_output`` or an output's ``binary_data``), else as
JSON numbers. A ``multipart/form-data`` upload (``curl -F data=@chest.dcm``) works too: its file
is the image, its other fields the request parameters. Errors answer ``{"error": message}``
with the status of the one mapping in :mod:`ptxplain.errors` (the app's handler set).
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import time
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from ptxplain.errors import InvalidInputError
from ptxplain.image_format import FORM_UPLOAD_HINT, looks_like_form_upload
from services.gateway.fanout import Gateway
from services.gateway.http_body import is_multipart, read_body, read_form
from services.gateway.logs import request_id_var
from services.gateway.oip import (
    INPUT_NAME,
    InferAnswer,
    InferRequest,
    ModelMetadata,
    OipModels,
    Param,
    Tensor,
    pack_bytes,
)

__all__ = ["HEADER_LENGTH", "OPEN_PATHS", "PREFIX", "create_oip_router", "oip_error_body"]

PREFIX = "/v2"
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")
HEADER_LENGTH = "Inference-Header-Content-Length"
_JSON_SLACK = 64 * 1024
_STRUCT_BY_DATATYPE = {"FP32": "f", "FP16": "e", "FP64": "d", "INT64": "q", "INT32": "i"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": dict[str, str]} for c in (400, 401, 413, 429, 503, 504)
}


class InputBody(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Param] = Field(default_factory=dict)
    data: list[Any] | None = Field(None, description="BYTES elements as base64 strings")


class OutputBody(BaseModel):
    name: str
    parameters: dict[str, Param] = Field(default_factory=dict)


class InferBody(BaseModel):
    """The protocol's inference request (its JSON part)."""

    id: str = ""
    parameters: dict[str, Param] = Field(default_factory=dict)
    inputs: list[InputBody]
    outputs: list[OutputBody] = Field(default_factory=list)


def oip_error_body(message: str) -> dict[str, str]:
    return {"error": message}


# -- request decoding --------------------------------------------------------------------------


def _flatten(values: Sequence[Any]) -> list[Any]:
    flat: list[Any] = []
    for value in values:
        flat += _flatten(value) if isinstance(value, list) else [value]
    return flat


def _json_bytes(item: InputBody) -> bytes:
    try:
        elements = [base64.b64decode(str(v), validate=True) for v in _flatten(item.data or [])]
    except (ValueError, binascii.Error) as exc:
        raise InvalidInputError(
            f"input {item.name!r}: BYTES data in JSON must be base64 ({exc}); or send the raw "
            f"file with the binary tensor data extension"
        ) from exc
    return pack_bytes(elements)


def _inputs(body: InferBody, binary: bytes) -> tuple[Tensor, ...]:
    tensors, offset = [], 0
    for item in body.inputs:
        size = item.parameters.get("binary_data_size")
        if size is None:
            data = _json_bytes(item)
        else:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise InvalidInputError(f"input {item.name!r}: bad binary_data_size {size!r}")
            data, offset = binary[offset : offset + size], offset + size
            if len(data) != size:
                raise InvalidInputError(
                    f"input {item.name!r}: binary_data_size {size} but the body ends first"
                )
        tensors.append(Tensor(item.name, item.datatype, tuple(item.shape), data))
    return tuple(tensors)


def _parse(text: bytes) -> InferBody:
    try:
        return InferBody.model_validate_json(text)
    except ValidationError as exc:
        if looks_like_form_upload(text):
            raise InvalidInputError(f"not an inference request: {FORM_UPLOAD_HINT}") from exc
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidInputError(f"not an inference request: {problems}") from exc


async def _body(request: Request, cap: int) -> tuple[InferBody, bytes]:
    """The JSON part and the binary part of an infer body."""
    body = await read_body(request, cap * 4 // 3 + _JSON_SLACK, "inference request")
    declared = request.headers.get(HEADER_LENGTH.lower())
    if declared is None:
        return _parse(body), b""
    if not declared.isdigit() or int(declared) > len(body):
        raise InvalidInputError(f"{HEADER_LENGTH} {declared!r} does not fit the body")
    return _parse(body[: int(declared)]), body[int(declared) :]


async def _request(
    request: Request, model: str, version: str, cap: int
) -> tuple[InferRequest, InferBody | None]:
    """The protocol request and, unless it was a form upload, its JSON part."""
    if is_multipart(request):
        image, fields = await read_form(request, cap)
        tensor = Tensor(INPUT_NAME, "BYTES", (1,), pack_bytes([image]))
        return InferRequest(model, (tensor,), dict(fields), version), None
    body, binary = await _body(request, cap)
    parsed = InferRequest(
        model,
        _inputs(body, binary),
        body.parameters,
        version,
        body.id,
        tuple(o.name for o in body.outputs),
    )
    return parsed, body


# -- response encoding -------------------------------------------------------------------------


def _json_data(tensor: Tensor) -> list[Any]:
    code = _STRUCT_BY_DATATYPE.get(tensor.datatype)
    if code is None:
        raise InvalidInputError(f"output {tensor.name!r} ({tensor.datatype}) needs binary_data")
    count = len(tensor.data) // struct.calcsize(code)
    return list(struct.unpack(f"<{count}{code}", tensor.data))


def _binary_wanted(body: InferBody | None) -> dict[str, bool]:
    """Per requested output name (and ``""`` for the rest): answer in binary?"""
    if body is None:  # a form upload: JSON for the curl user
        return {"": False}
    default = bool(body.parameters.get("binary_data_output", False))
    wanted = {o.name: bool(o.parameters.get("binary_data", default)) for o in body.outputs}
    return {"": default, **wanted}


def _response(answer: InferAnswer, binary: dict[str, bool]) -> Response:
    outputs, parts = [], []
    for tensor in answer.outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
            "parameters": dict(tensor.parameters),
        }
        if binary.get(tensor.name, binary[""]):
            entry["parameters"]["binary_data_size"] = len(tensor.data)
            parts.append(tensor.data)
        else:
            entry["data"] = _json_data(tensor)
        outputs.append(entry)
    head = {
        "model_name": answer.model,
        "model_version": answer.version,
        "id": answer.id,
        "parameters": answer.parameters,
        "outputs": outputs,
    }
    text = json.dumps(head).encode()
    if not parts:
        return Response(text, media_type="application/json")
    headers = {HEADER_LENGTH: str(len(text))}
    return Response(
        b"".join([text, *parts]), media_type="application/octet-stream", headers=headers
    )


def _metadata_json(meta: ModelMetadata) -> dict[str, Any]:
    def tensors(items: Sequence[Any]) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]

    return {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": tensors(meta.inputs),
        "outputs": tensors(meta.outputs),
    }


def _readiness(ready: bool, **fields: Any) -> JSONResponse:
    return JSONResponse({**fields, "ready": ready}, status_code=200 if ready else 503)


# -- the routes --------------------------------------------------------------------------------


def create_oip_router(gateway: Gateway) -> APIRouter:
    """The ``/v2`` routes on ``gateway``."""
    models = OipModels(gateway)
    cap = gateway.config.max_image_bytes
    router = APIRouter(prefix=PREFIX, tags=["Open Inference Protocol (v2)"], responses=_ERRORS)

    @router.get("")
    async def server_metadata() -> dict[str, Any]:
        name, version, extensions = models.server_metadata()
        return {"name": name, "version": version, "extensions": list(extensions)}

    @router.get("/health/live")
    async def server_live() -> dict[str, bool]:
        return {"live": True}

    @router.get("/health/ready")
    async def server_ready() -> JSONResponse:
        return _readiness(await models.server_ready())

    @router.get("/models/{model}")
    @router.get("/models/{model}/versions/{version}")
    async def model_metadata(model: str, version: str = "") -> dict[str, Any]:
        return _metadata_json(await models.model_metadata(model, version))

    @router.get("/models/{model}/ready")
    @router.get("/models/{model}/versions/{version}/ready")
    async def model_ready(model: str, version: str = "") -> JSONResponse:
        return _readiness(await models.model_ready(model, version), name=model)

    @router.post("/models/{model}/infer", openapi_extra=_INFER_DOC)
    @router.post("/models/{model}/versions/{version}/infer", openapi_extra=_INFER_DOC)
    async def infer(request: Request, model: str, version: str = "") -> Response:
        received = time.perf_counter()
        parsed, body = await _request(request, model, version, cap)
        answer = await models.infer(parsed, received=received, request_id=request_id_var.get())
        return _response(answer, _binary_wanted(body))

    return router


_INFER_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": InferBody.model_json_schema()},
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": f"JSON header ({HEADER_LENGTH} bytes), then raw inputs",
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"data": {"type": "string", "format": "binary"}},
                    "additionalProperties": {"type": "string"},
                }
            },
        },
    }
}
