"""TorchServe-style calls on the gateway's HTTP port, for clients and habits that expect them:

    POST /predictions/{model}   one model's result (the JSON of one ``/v1/explain`` result):
                                the image as the raw body or a form upload (``curl -F
                                data=@chest.dcm``), the handler's options as form fields or
                                query parameters (methods, target, map_size, map_encoding,
                                normalize, logits_only)
    GET  /v1/models/{model}     one model's catalog entry

Errors are the gateway's (the app's one handler set); a model that fails answers its own status.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from ptxplain.explain.options import ExplainOptions
from services.gateway.fanout import Gateway, all_failed_error
from services.gateway.http_body import is_multipart, read_body, read_form
from services.gateway.http_json import ModelInfoBody, ModelResultBody, outcome_json
from services.gateway.logs import note, request_id_var

__all__ = ["create_torchserve_router"]

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"data": {"type": "string", "format": "binary"}},
                    "additionalProperties": {"type": "string"},
                    "required": ["data"],
                }
            },
        },
    }
}


async def _image_and_options(request: Request, cap: int) -> tuple[bytes, ExplainOptions]:
    fields: dict[str, str] = dict(request.query_params)
    if is_multipart(request):
        image, form = await read_form(request, cap)
        fields.update(form)
    else:
        image = await read_body(request, cap, "image")
    return image, ExplainOptions.from_inputs(fields)


def create_torchserve_router(gateway: Gateway) -> APIRouter:
    """The TorchServe-style routes on ``gateway``."""
    router = APIRouter(tags=["TorchServe-style"])
    cap = gateway.config.max_image_bytes

    @router.post("/predictions/{model}", response_model=ModelResultBody, openapi_extra=_BODY_DOC)
    async def predictions(request: Request, model: str) -> dict[str, Any]:
        received = time.perf_counter()
        image, options = await _image_and_options(request, cap)
        call = await gateway.prepare(
            request_id=request_id_var.get(),
            image=image,
            models=[model],
            options=options,
            received=received,
            timeout_s=None,
        )
        note(models=[model], image_format=call.image_format, image_bytes=call.image_bytes)
        (outcome,) = await gateway.explain(call)
        note(results={model: outcome.code.name})
        failed = all_failed_error([outcome])
        if failed is not None:
            raise failed
        return outcome_json(outcome, gateway.catalog.get(model))

    @router.get("/v1/models/{model}", response_model=ModelInfoBody)
    async def model_info(model: str) -> dict[str, Any]:
        await gateway.start()
        return gateway.catalog.get(model).to_json()

    return router
