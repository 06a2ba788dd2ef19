"""The Open Inference Protocol (KServe v2) in the gateway's terms, shared by its REST and gRPC
faces (``oip_http``, ``oip_grpc``): models, tensors and parameters on the :class:`Gateway` core.

* Models: every served model, plus the fan-out model ``all`` that answers every ready model in
  one call (its outputs and parameters are prefixed ``<model>/``).
* Input: one ``BYTES`` tensor of one element (conventionally named ``image``): the image file,
  PNG, JPEG or DICOM, sniffed as on ``/v1/explain``.
* Request parameters: the handler's options — ``methods`` (comma-separated), ``target``,
  ``map_size``, ``map_encoding`` (``float32``, the default, or ``float16``), ``normalize``,
  ``logits_only`` — and ``timeout`` (microseconds, as Triton's clients send it).
* Outputs: ``logits`` and ``probabilities`` (FP32, ``[1, K]``) and one map per CAM method,
  named as the method (``[1, h, w]``, FP32 or FP16: the handler's bytes as they came), with
  ``space``, ``normalized``, ``raw_min``, ``raw_max`` and ``target_class`` as its parameters.
* Response parameters: the model's ``status`` (and ``message``), ``architecture``, ``classes``,
  ``predicted_class``, ``positive_probability``, ``threshold``, ``positive``, ``label``,
  ``trained``, ``seen_in_training``, the geometry fields (``original_height`` …
  ``content_width``, ``scale``) and the ``request_id``.

Errors are :mod:`ptxplain.errors` exceptions; each face maps them once, as it maps the rest.
"""

from __future__ import annotations

import dataclasses
import struct
import sys
from array import array
from collections.abc import Mapping, Sequence

from ptxplain.build_info import versions
from ptxplain.errors import InternalError, InvalidInputError, InvalidOptionError, UnknownModelError
from ptxplain.explain.options import DEFAULT_METHOD, OPTION_KEYS, ExplainOptions
from ptxplain.v1 import result_pb2 as pb
from services.gateway.catalog import ModelInfo
from services.gateway.fanout import Gateway, ModelOutcome, all_failed_error
from services.gateway.http_json import result_label
from services.gateway.logs import note

__all__ = [
    "EXTENSIONS",
    "FANOUT_MODEL",
    "INPUT_NAME",
    "InferAnswer",
    "InferRequest",
    "ModelMetadata",
    "OipModels",
    "Param",
    "Tensor",
    "TensorMeta",
    "pack_bytes",
    "unpack_bytes",
]

FANOUT_MODEL = "all"
INPUT_NAME = "image"
SERVER_NAME = "ptxplain"
EXTENSIONS = ("binary_tensor_data", "parameters")
# Parameters a protocol client may send that concern the transport, not the model.
_TRANSPORT_PARAMETERS = ("binary_data_output", "timeout", "priority")
_DATATYPE_BY_ENCODING = {pb.MAP_ENCODING_FLOAT32: "FP32", pb.MAP_ENCODING_FLOAT16: "FP16"}
_ENCODINGS = ("float32", "float16")  # the maps a tensor can carry as they come
_LENGTH = struct.Struct("<I")

Param = bool | int | float | str


@dataclasses.dataclass(frozen=True)
class Tensor:
    """A tensor as the protocol carries it: row-major little-endian bytes (``BYTES``: each
    element a 4-byte little-endian length, then its bytes)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes
    parameters: Mapping[str, Param] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TensorMeta:
    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]


@dataclasses.dataclass(frozen=True)
class InferRequest:
    model: str
    inputs: tuple[Tensor, ...]
    parameters: Mapping[str, Param] = dataclasses.field(default_factory=dict)
    version: str = ""
    id: str = ""
    # Requested output names; empty = every output.
    outputs: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class InferAnswer:
    model: str
    version: str
    id: str
    parameters: dict[str, Param]
    outputs: list[Tensor]


# -- tensors -----------------------------------------------------------------------------------


def unpack_bytes(data: bytes) -> list[bytes]:
    """The elements of a raw ``BYTES`` tensor (length-prefixed)."""
    elements, offset = [], 0
    while offset < len(data):
        if offset + _LENGTH.size > len(data):
            raise InvalidInputError("BYTES tensor data ends inside an element's 4-byte length")
        (size,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + size > len(data):
            raise InvalidInputError("BYTES tensor data is shorter than an element's length says")
        elements.append(data[offset : offset + size])
        offset += size
    return elements


def pack_bytes(elements: Sequence[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)


def _fp32(values: Sequence[float]) -> bytes:
    packed = array("f", values)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def _image(inputs: Sequence[Tensor]) -> bytes:
    """The one image of a request: a single BYTES input holding one element."""
    if len(inputs) != 1:
        raise InvalidInputError(
            f"expected one input (BYTES {INPUT_NAME!r}: the image file), got {len(inputs)}"
        )
    tensor = inputs[0]
    if tensor.datatype != "BYTES":
        raise InvalidInputError(
            f"input {tensor.name!r} must be BYTES (the image file), got {tensor.datatype}"
        )
    elements = unpack_bytes(tensor.data)
    if len(elements) != 1:
        raise InvalidInputError(
            f"input {tensor.name!r} must hold one image (shape [1]), got {len(elements)}"
        )
    return elements[0]


# -- parameters --------------------------------------------------------------------------------


def _text(value: Param) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_keys(parameters: Mapping[str, Param]) -> None:
    unknown = sorted(set(parameters) - {*OPTION_KEYS, *_TRANSPORT_PARAMETERS})
    if unknown:
        raise InvalidOptionError(
            f"unknown parameter {', '.join(map(repr, unknown))}; "
            f"known: {', '.join((*OPTION_KEYS, 'timeout'))}"
        )


def call_options(parameters: Mapping[str, Param]) -> ExplainOptions:
    """The handler's options from the request parameters (unknown keys are refused)."""
    _check_keys(parameters)
    text = {key: _text(value) for key, value in parameters.items() if key in OPTION_KEYS}
    text.setdefault("map_encoding", "float32")
    options = ExplainOptions.from_inputs(text)
    if options.map_encoding not in _ENCODINGS:
        raise InvalidOptionError(
            f"parameter 'map_encoding' must be float32 (FP32 maps) or float16 (FP16), "
            f"got {options.map_encoding!r}"
        )
    return options


def timeout_s(parameters: Mapping[str, Param]) -> float | None:
    """The request's ``timeout`` parameter (microseconds) in seconds, or None."""
    value = parameters.get("timeout")
    if value is None:
        return None
    try:
        micros = float(value) if not isinstance(value, bool) else -1.0
    except ValueError:
        micros = -1.0
    if micros <= 0:
        raise InvalidOptionError(
            f"parameter 'timeout' must be positive microseconds, got {value!r}"
        )
    return micros / 1e6


# -- results -> tensors and parameters ---------------------------------------------------------


def _map_tensor(prefix: str, item: pb.Map) -> Tensor:
    datatype = _DATATYPE_BY_ENCODING.get(item.encoding)
    if datatype is None:
        raise InternalError(f"the handler answered a map encoded as {item.encoding}")
    return Tensor(
        prefix + item.method,
        datatype,
        (1, item.height, item.width),
        item.data,
        {
            "space": pb.MapSpace.Name(item.space).removeprefix("MAP_SPACE_").lower(),
            "normalized": item.normalized,
            "raw_min": item.raw_min,
            "raw_max": item.raw_max,
            "target_class": item.target_class,
        },
    )


def _result_tensors(prefix: str, result: pb.ExplainResult) -> list[Tensor]:
    k = len(result.logits)
    return [
        Tensor(prefix + "logits", "FP32", (1, k), _fp32(result.logits)),
        Tensor(prefix + "probabilities", "FP32", (1, k), _fp32(result.probabilities)),
        *(_map_tensor(prefix, m) for m in result.maps),
    ]


def _result_parameters(result: pb.ExplainResult, info: ModelInfo) -> dict[str, Param]:
    values: dict[str, Param] = {
        "architecture": result.architecture,
        "classes": ",".join(result.classes),
        "predicted_class": result.predicted_class,
        "positive_probability": result.positive_probability,
        "threshold": result.threshold,
        "positive": result.positive,
        "label": result_label(result, info.positive_class),
        "trained": result.trained,
        "seen_in_training": result.seen_in_training,
    }
    if result.HasField("geometry"):
        g = result.geometry
        values.update({f.name: getattr(g, f.name) for f in g.DESCRIPTOR.fields})
    return values


def _outcome_part(
    outcome: ModelOutcome, info: ModelInfo, prefix: str
) -> tuple[dict[str, Param], list[Tensor]]:
    parameters: dict[str, Param] = {"status": outcome.code.name}
    if not outcome.ok:
        return {**parameters, "message": outcome.message}, []
    result = pb.ExplainResult.FromString(outcome.raw or b"")
    parameters.update(_result_parameters(result, info))
    return parameters, _result_tensors(prefix, result)


def _select(outputs: list[Tensor], requested: Sequence[str]) -> list[Tensor]:
    if not requested:
        return outputs
    by_name = {t.name: t for t in outputs}
    missing = [name for name in requested if name not in by_name]
    if missing:
        raise InvalidOptionError(
            f"unknown output {', '.join(map(repr, missing))}; this answer has "
            f"{', '.join(by_name) or 'none'}"
        )
    return [by_name[name] for name in requested]


# -- the models --------------------------------------------------------------------------------


class OipModels:
    """The protocol's calls on one :class:`Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @staticmethod
    def server_metadata() -> tuple[str, str, tuple[str, ...]]:
        return SERVER_NAME, versions()["version"], EXTENSIONS

    async def server_ready(self) -> bool:
        await self.gateway.start()
        return self.gateway.ready()

    async def model_ready(self, name: str, version: str = "") -> bool:
        await self.gateway.start()
        if name == FANOUT_MODEL:
            return self.gateway.ready()
        return self._info(name, version).ready

    def _info(self, name: str, version: str) -> ModelInfo:
        info = self.gateway.catalog.get(name)
        if version and info.version and version != info.version:
            raise UnknownModelError(
                f"model {name!r} has no version {version!r}; served: {info.version}", model=name
            )
        return info

    async def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        await self.gateway.start()
        image = (TensorMeta(INPUT_NAME, "BYTES", (1,)),)
        if name == FANOUT_MODEL:
            models = [self.gateway.catalog.get(m) for m in self.gateway.catalog.ready_models()]
            outputs = [meta for m in models for meta in _output_metas(m, f"{m.name}/")]
            return ModelMetadata(name, (), "ensemble", image, tuple(outputs))
        info = self._info(name, version)
        versions_ = (info.version,) if info.version else ()
        return ModelMetadata(name, versions_, "pytorch", image, _output_metas(info, ""))

    async def infer(
        self,
        request: InferRequest,
        *,
        received: float,
        request_id: str,
        deadline_s: float | None = None,
    ) -> InferAnswer:
        """One model's (or, for ``all``, every ready model's) answer as protocol tensors;
        ``deadline_s``: the transport's deadline, if any (the ``timeout`` parameter may cut it)."""
        fanout = request.model == FANOUT_MODEL
        if not fanout:
            self._info(request.model, request.version)
        call = await self.gateway.prepare(
            request_id=request_id,
            image=_image(request.inputs),
            models=[] if fanout else [request.model],
            options=call_options(request.parameters),
            received=received,
            timeout_s=_earliest(timeout_s(request.parameters), deadline_s),
        )
        note(models=list(call.models), image_format=call.image_format, image_bytes=call.image_bytes)
        outcomes = await self.gateway.explain(call)
        note(results={o.model: o.code.name for o in outcomes})
        failed = all_failed_error(outcomes)
        if failed is not None:
            raise failed
        parameters, outputs = self._answer(outcomes, fanout)
        parameters["request_id"] = call.request_id
        version = "" if fanout else self.gateway.catalog.get(request.model).version
        selected = _select(outputs, request.outputs)
        return InferAnswer(request.model, version, request.id, parameters, selected)

    def _answer(
        self, outcomes: Sequence[ModelOutcome], fanout: bool
    ) -> tuple[dict[str, Param], list[Tensor]]:
        parameters: dict[str, Param] = {}
        outputs: list[Tensor] = []
        for outcome in outcomes:
            prefix = f"{outcome.model}/" if fanout else ""
            part, tensors = _outcome_part(outcome, self.gateway.catalog.get(outcome.model), prefix)
            parameters.update({prefix + key: value for key, value in part.items()})
            outputs += tensors
        return parameters, outputs


def _earliest(*limits: float | None) -> float | None:
    given = [limit for limit in limits if limit is not None]
    return min(given) if given else None


def _output_metas(info: ModelInfo, prefix: str) -> tuple[TensorMeta, ...]:
    k = len(info.classes) or -1
    return (
        TensorMeta(prefix + "logits", "FP32", (1, k)),
        TensorMeta(prefix + "probabilities", "FP32", (1, k)),
        TensorMeta(prefix + DEFAULT_METHOD, "FP32", (1, -1, -1)),
    )
