"""The Open Inference Protocol's gRPC face: ``inference.GRPCInferenceService``
(protos/ptxplain/oip/grpc_predict_v2.proto) on the gateway's gRPC server, next to
``ptxplain.v1.Explainer``.

The calls are those of :mod:`services.gateway.oip`; this module only converts messages. Inputs
are read from ``raw_input_contents`` (what tritonclient sends) or from ``contents.bytes_contents``;
outputs go out as ``raw_output_contents``. Errors are raised as :mod:`ptxplain.errors`
exceptions and become the call's status in the server's one interceptor; ``ServerLive`` and
``ServerReady`` stay open (no token) for probes, as the health service does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import grpc

from ptxplain.oip import grpc_predict_v2_pb2 as opb
from ptxplain.oip import grpc_predict_v2_pb2_grpc as ogrpc
from services.gateway.fanout import Gateway
from services.gateway.logs import request_id_var
from services.gateway.oip import InferAnswer, InferRequest, OipModels, Param, Tensor, pack_bytes

__all__ = ["OPEN_METHODS", "SERVICE_NAME", "OipService", "add_oip_service"]

SERVICE_NAME = opb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
OPEN_METHODS = (f"/{SERVICE_NAME}/ServerLive", f"/{SERVICE_NAME}/ServerReady")


def _param(value: Any) -> Param:
    kind = value.WhichOneof("parameter_choice")
    return getattr(value, kind) if kind else ""


def _params(parameters: Mapping[str, Any]) -> dict[str, Param]:
    return {key: _param(value) for key, value in parameters.items()}


def _set_param(target: Any, value: Param) -> None:
    if isinstance(value, bool):
        target.bool_param = value
    elif isinstance(value, int):
        target.int64_param = value
    elif isinstance(value, float):
        target.double_param = value
    else:
        target.string_param = str(value)


def _fill(parameters: Any, values: Mapping[str, Param]) -> None:
    for key, value in values.items():
        _set_param(parameters[key], value)


def _inputs(request: opb.ModelInferRequest) -> tuple[Tensor, ...]:
    raw = list(request.raw_input_contents)
    tensors = []
    for index, item in enumerate(request.inputs):
        contents = list(item.contents.bytes_contents)
        data = raw[index] if index < len(raw) else pack_bytes(contents)
        tensors.append(Tensor(item.name, item.datatype, tuple(item.shape), data))
    return tuple(tensors)


def _request(request: opb.ModelInferRequest) -> InferRequest:
    return InferRequest(
        model=request.model_name,
        inputs=_inputs(request),
        parameters=_params(request.parameters),
        version=request.model_version,
        id=request.id,
        outputs=tuple(o.name for o in request.outputs),
    )


def _response(answer: InferAnswer) -> opb.ModelInferResponse:
    response = opb.ModelInferResponse(
        model_name=answer.model, model_version=answer.version, id=answer.id
    )
    _fill(response.parameters, answer.parameters)
    for tensor in answer.outputs:
        output = response.outputs.add(
            name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape)
        )
        _fill(output.parameters, tensor.parameters)
        response.raw_output_contents.append(tensor.data)
    return response


class OipService(ogrpc.GRPCInferenceServiceServicer):
    """The protocol's six calls on the shared :class:`Gateway` core."""

    def __init__(self, gateway: Gateway) -> None:
        self.models = OipModels(gateway)

    async def ServerLive(self, request: Any, context: Any) -> opb.ServerLiveResponse:
        return opb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> opb.ServerReadyResponse:
        return opb.ServerReadyResponse(ready=await self.models.server_ready())

    async def ModelReady(
        self, request: opb.ModelReadyRequest, context: Any
    ) -> opb.ModelReadyResponse:
        ready = await self.models.model_ready(request.name, request.version)
        return opb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: Any, context: Any) -> opb.ServerMetadataResponse:
        name, version, extensions = self.models.server_metadata()
        return opb.ServerMetadataResponse(name=name, version=version, extensions=extensions)

    async def ModelMetadata(
        self, request: opb.ModelMetadataRequest, context: Any
    ) -> opb.ModelMetadataResponse:
        meta = await self.models.model_metadata(request.name, request.version)

        def tensors(items: Any) -> list[opb.ModelMetadataResponse.TensorMetadata]:
            return [
                opb.ModelMetadataResponse.TensorMetadata(
                    name=t.name, datatype=t.datatype, shape=list(t.shape)
                )
                for t in items
            ]

        return opb.ModelMetadataResponse(
            name=meta.name,
            versions=list(meta.versions),
            platform=meta.platform,
            inputs=tensors(meta.inputs),
            outputs=tensors(meta.outputs),
        )

    async def ModelInfer(
        self, request: opb.ModelInferRequest, context: Any
    ) -> opb.ModelInferResponse:
        received = time.perf_counter()
        answer = await self.models.infer(
            _request(request),
            received=received,
            request_id=request_id_var.get(),
            deadline_s=context.time_remaining(),
        )
        return _response(answer)


def add_oip_service(server: grpc.aio.Server, gateway: Gateway) -> str:
    """Serve the protocol on ``server``; returns its full service name (for reflection)."""
    ogrpc.add_GRPCInferenceServiceServicer_to_server(OipService(gateway), server)
    return SERVICE_NAME
