"""The JSON shapes of the HTTP twin: pydantic models (they make the OpenAPI document) and the
conversions from the gateway's outcomes.

Maps travel as base64 of their bytes with their shape: an 8-bit grayscale PNG
(``encoding: "png"``) or little-endian float16 values, row-major (``encoding: "float16"``) —
never as JSON lists of floats.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ptxplain.errors import Code, client_message
from ptxplain.explain.options import ENCODING_BY_PROTO, ExplainOptions, method_names
from ptxplain.v1 import result_pb2 as pb
from services.gateway.catalog import Catalog, ModelInfo
from services.gateway.edge import ExplainCall
from services.gateway.fanout import ModelOutcome

__all__ = [
    "ErrorBody",
    "ExplainBody",
    "ExplainQuery",
    "ExplainResponseBody",
    "ModelsBody",
    "error_body",
    "outcome_json",
    "response_json",
    "result_label",
]

_SPACES = {pb.MAP_SPACE_LAYER: "layer", pb.MAP_SPACE_RESIZED: "resized"}


class StatusBody(BaseModel):
    code: str = Field(description="OK or a status name (INVALID_ARGUMENT, UNAVAILABLE, ...)")
    message: str = ""
    http_status: int = 200


class MapBody(BaseModel):
    method: str
    shape: list[int] = Field(description="[height, width]")
    encoding: str = Field(description="png (8-bit grayscale) or float16 (little-endian)")
    space: str = Field(description="layer (the target layer's grid) or resized")
    normalized: bool
    raw_min: float
    raw_max: float
    target_class: int
    data: str = Field(description="base64 of the PNG file or of the float16 values")


class ResultBody(BaseModel):
    architecture: str
    classes: list[str]
    logits: list[float]
    probabilities: list[float]
    predicted_class: int
    positive_probability: float
    threshold: float
    positive: bool
    label: str = Field(description="the class the model's own threshold gives")
    trained: bool
    trained_on: str = Field(
        description='"phantom (synthetic)", the data set\'s name or "untrained"'
    )
    seen_in_training: bool = Field(
        False,
        description="the image's pixels match one of the model's training or validation images",
    )
    geometry: dict[str, float] | None = Field(description="how the map's canvas maps to the image")
    timings: dict[str, float]
    maps: list[MapBody]


class ModelResultBody(BaseModel):
    model: str
    status: StatusBody
    architecture: str
    trained: bool
    trained_on: str
    gateway_timings: dict[str, float]
    result: ResultBody | None = None


class ExplainResponseBody(BaseModel):
    request_id: str
    image_format: str
    image_bytes: int
    total_ms: float
    results: list[ModelResultBody]


class ExplainQuery(BaseModel):
    """The query parameters of ``POST /v1/explain`` (the handler checks the option values);
    an unknown key is an error (``?method=hirescam`` must not silently mean gradcam)."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(
        default_factory=list,
        description="model names (comma-separated or repeated); none = every ready model",
    )
    methods: str | None = Field(None, description="CAM methods, comma-separated (default gradcam)")
    target: str | None = Field(None, description="positive (default), predicted or a class index")
    map_size: str | None = Field(None, description="native (default), input, N or HxW")
    map_encoding: str = Field("float16", pattern="^(png|float16)$", description="png or float16")
    normalize: bool | None = Field(None, description="min-max normalize maps (default true)")
    logits_only: bool = Field(False, description="skip the maps")
    timeout_s: float | None = Field(None, gt=0, description="deadline for the whole request")

    def model_names(self) -> list[str]:
        """The models named in the query (comma-separated or repeated)."""
        return [name.strip() for value in self.models for name in value.split(",") if name.strip()]

    def call_options(self) -> ExplainOptions:
        return ExplainOptions(
            methods=method_names([self.methods] if self.methods is not None else []),
            target=self.target or "",
            map_size=self.map_size or "",
            map_encoding=self.map_encoding,
            normalize=self.normalize,
            logits_only=self.logits_only,
        )


class ExplainBody(BaseModel):
    """The JSON request body (``Content-Type: application/json``); unknown keys are an error."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="the image file (PNG, JPEG or DICOM), base64")
    models: list[str] = Field(default_factory=list, description="empty = every ready model")


class ModelInfoBody(BaseModel):
    name: str
    backend: str
    architecture: str
    family: str
    version: str
    input_size: int
    classes: list[str]
    positive_class: int
    threshold: float
    depth: int
    parameters: int
    flops: int
    trained: bool
    weights_source: str
    data_fingerprint: str = Field(description="SHA-256 of the training data and its split")
    cam_grid: list[int] = Field(description="rows and columns of the CAM target layer's map")
    ready: bool
    detail: str
    methods: list[str] = Field(description="the CAM methods the model's handler serves")
    trained_on: str = Field(
        description='"phantom (synthetic)", the data set\'s name, or "untrained"; empty if unknown'
    )
    training_digests: int = Field(
        0, description="training and validation image digests the handler checks; 0 = unknown"
    )


class UnlistedBackendBody(BaseModel):
    backend: str
    reason: str
    detail: str


class ModelsBody(BaseModel):
    models: list[ModelInfoBody]
    unlisted_backends: list[UnlistedBackendBody] = []


class ErrorDetail(BaseModel):
    code: str
    message: str
    model: str = ""


class ErrorBody(BaseModel):
    error: ErrorDetail
    request_id: str


def error_body(code: Code, message: str, model: str, request_id: str) -> dict[str, Any]:
    """An HTTP error's JSON; the message bounded and ASCII-escaped (it may quote the request)."""
    return {
        "error": {"code": code.name, "message": client_message(message), "model": model},
        "request_id": request_id,
    }


def _map_json(item: pb.Map) -> dict[str, Any]:
    return {
        "method": item.method,
        "shape": [item.height, item.width],
        "encoding": ENCODING_BY_PROTO.get(item.encoding, "unspecified"),
        "space": _SPACES.get(item.space, "unspecified"),
        "normalized": item.normalized,
        "raw_min": item.raw_min,
        "raw_max": item.raw_max,
        "target_class": item.target_class,
        "data": base64.b64encode(item.data).decode("ascii"),
    }


def result_label(result: pb.ExplainResult, positive_class: int) -> str:
    classes = list(result.classes)
    if not classes:
        return ""
    if result.positive and positive_class < len(classes):
        return classes[positive_class]
    others = [c for i, c in enumerate(classes) if i != positive_class]
    return others[0] if others else classes[0]


def _result_json(result: pb.ExplainResult, info: ModelInfo) -> dict[str, Any]:
    geometry = None
    if result.HasField("geometry"):
        g = result.geometry
        geometry = {f.name: getattr(g, f.name) for f in g.DESCRIPTOR.fields}
    t = result.timings
    return {
        "architecture": result.architecture,
        "classes": list(result.classes),
        "logits": list(result.logits),
        "probabilities": list(result.probabilities),
        "predicted_class": result.predicted_class,
        "positive_probability": result.positive_probability,
        "threshold": result.threshold,
        "positive": result.positive,
        "label": result_label(result, info.positive_class),
        "trained": result.trained,
        "trained_on": result.trained_on,
        "seen_in_training": result.seen_in_training,
        "geometry": geometry,
        "timings": {f.name: getattr(t, f.name) for f in t.DESCRIPTOR.fields},
        "maps": [_map_json(m) for m in result.maps],
    }


def outcome_json(outcome: ModelOutcome, info: ModelInfo) -> dict[str, Any]:
    """One model's result as JSON (the handler's bytes are parsed here, once)."""
    timings = outcome.timings
    body: dict[str, Any] = {
        "model": outcome.model,
        "status": {
            "code": outcome.code.name,
            "message": outcome.message,
            "http_status": outcome.http_status,
        },
        "architecture": outcome.architecture,
        "trained": outcome.trained,
        "trained_on": outcome.trained_on,
        "gateway_timings": {f.name: getattr(timings, f.name) for f in timings.DESCRIPTOR.fields},
        "result": None,
    }
    if outcome.raw is not None:
        body["result"] = _result_json(pb.ExplainResult.FromString(outcome.raw), info)
    return body


def response_json(
    call: ExplainCall, outcomes: list[ModelOutcome], catalog: Catalog
) -> dict[str, Any]:
    """The body of ``POST /v1/explain``."""
    return {
        "request_id": call.request_id,
        "image_format": call.image_format,
        "image_bytes": call.image_bytes,
        "results": [outcome_json(o, catalog.get(o.model)) for o in outcomes],
        "total_ms": (time.perf_counter() - call.received) * 1000.0,
    }
