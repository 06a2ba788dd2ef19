"""The gRPC face of the gateway: ``ptxplain.v1.Explainer`` on grpc.aio, the Open Inference
Protocol's ``inference.GRPCInferenceService`` (services/gateway/oip_grpc.py), standard health
checking and server reflection.

Errors become gRPC status in ONE place, :class:`GatewayInterceptor`, from
:mod:`ptxplain.errors` (``Code`` is numbered as gRPC's). The interceptor also assigns the
request id (the client's ``x-request-id`` if it sent a usable one), returns it in the initial
and trailing metadata, checks the client's bearer token when one is configured (health checks
stay open for probes), counts the request and writes its access-log line.

Requests arrive as bytes and are parsed inside the call (not by grpc's deserializer, whose
failures reach the client as UNKNOWN), so bytes that are no ``ExplainRequest`` (not protobuf,
invalid UTF-8 in a string field, a broken ``options``) are INVALID_ARGUMENT naming the problem.
Every status message is bounded and ASCII-escaped (:func:`ptxplain.errors.client_message`): a
request's own text echoed at full length would pass the client's metadata limit.

Responses carrying model results are serialized as the internal twins ``ModelResultBytes`` /
``ExplainResponseBytes`` (explainer.proto): the handlers' result bytes go into the response as
they came from TorchServe, never parsed and re-encoded; clients parse the public messages.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ptxplain.errors import (
    AuthError,
    ConfigError,
    DecodeError,
    InvalidInputError,
    PtxplainError,
    client_message,
)
from ptxplain.explain.options import ExplainOptions
from ptxplain.v1 import explainer_pb2 as epb
from services.gateway.config import GatewayConfig
from services.gateway.edge import ExplainCall
from services.gateway.fanout import Gateway, ModelOutcome, all_failed_error
from services.gateway.logs import (
    REQUEST_ID_HEADER,
    access_fields_var,
    new_request_id,
    note,
    request_id_var,
)
from services.gateway.oip_grpc import OPEN_METHODS as OIP_OPEN_METHODS
from services.gateway.oip_grpc import add_oip_service

__all__ = [
    "BACKEND_HEALTH_PREFIX",
    "SERVICE_NAME",
    "ExplainerService",
    "GatewayInterceptor",
    "create_server",
]

log = logging.getLogger(__name__)
SERVICE_NAME = epb.DESCRIPTOR.services_by_name["Explainer"].full_name
# Calls that need no token and write no access-log line: probes.
_OPEN_PREFIXES = (f"/{health.SERVICE_NAME}/", *OIP_OPEN_METHODS)
# The health service's entry for each backend: NOT_SERVING while its models cannot be listed.
BACKEND_HEALTH_PREFIX = "backend/"


def _identity(data: bytes) -> bytes:
    return data


def _parse(message: type[Message], raw: bytes) -> Any:
    """``raw`` as ``message``; bytes that are not one are the client's error."""
    try:
        return message.FromString(raw)
    except (ProtobufDecodeError, RuntimeError, ValueError) as exc:
        name = message.DESCRIPTOR.full_name
        raise InvalidInputError(f"the request is not a valid {name}: {exc}") from exc


class ExplainerService:
    """The three RPCs on the shared :class:`Gateway` core."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def _prepare(self, raw: bytes, context: Any) -> ExplainCall:
        received = time.perf_counter()
        request = _parse(epb.ExplainRequest, raw)
        call = await self.gateway.prepare(
            request_id=request_id_var.get(),
            image=request.image,
            models=list(request.models),
            options=ExplainOptions.from_proto(request.options),
            received=received,
            timeout_s=context.time_remaining(),
        )
        note(models=list(call.models), image_format=call.image_format, image_bytes=call.image_bytes)
        return call

    async def explain(self, request: bytes, context: Any) -> bytes:
        call = await self._prepare(request, context)
        outcomes = await self.gateway.explain(call)
        note(results={o.model: o.code.name for o in outcomes})
        failed = all_failed_error(outcomes)
        if failed is not None:
            raise failed
        return epb.ExplainResponseBytes(
            request_id=call.request_id,
            results=[o.wire() for o in outcomes],
            image_format=call.image_format,
            image_bytes=call.image_bytes,
            total_ms=(time.perf_counter() - call.received) * 1000.0,
        ).SerializeToString()

    async def explain_stream(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        """Successes as they come; failures held back until a first success went out."""
        call = await self._prepare(request, context)
        held: list[ModelOutcome] = []
        results: dict[str, str] = {}
        note(results=results)
        sent = False
        async for outcome in self.gateway.outcomes(call):
            results[outcome.model] = outcome.code.name
            if not outcome.ok and not sent:
                held.append(outcome)
                continue
            yield outcome.wire().SerializeToString()
            if not sent:
                sent = True
                for failure in held:
                    yield failure.wire().SerializeToString()
        failed = None if sent else all_failed_error(held)
        if failed is not None:
            raise failed

    async def list_models(self, request: bytes, context: Any) -> epb.ListModelsResponse:
        _parse(epb.ListModelsRequest, request)
        await self.gateway.start()
        catalog = self.gateway.catalog
        return epb.ListModelsResponse(
            models=[m.to_proto() for m in catalog.models()],
            unlisted_backends=[u.to_proto() for u in catalog.unlisted()],
        )


def explainer_handler(service: ExplainerService) -> grpc.GenericRpcHandler:
    """The Explainer service with pass-through serializers for the result-carrying RPCs."""
    return grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {
            "Explain": grpc.unary_unary_rpc_method_handler(
                service.explain, request_deserializer=_identity, response_serializer=_identity
            ),
            "ExplainStream": grpc.unary_stream_rpc_method_handler(
                service.explain_stream,
                request_deserializer=_identity,
                response_serializer=_identity,
            ),
            "ListModels": grpc.unary_unary_rpc_method_handler(
                service.list_models,
                request_deserializer=_identity,
                response_serializer=epb.ListModelsResponse.SerializeToString,
            ),
        },
    )


# -- the one interceptor ------------------------------------------------------------------------


class GatewayInterceptor(grpc.aio.ServerInterceptor):
    """Request id, client auth, error -> status mapping, metrics and the access log."""

    def __init__(self, gateway: Gateway, token: str | None) -> None:
        self.gateway = gateway
        self._expected = f"Bearer {token}".encode() if token else None

    async def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        behaviour = handler.unary_stream or handler.stream_stream
        wrapped = self._streaming(behaviour, method)
        factory = (
            grpc.unary_stream_rpc_method_handler
            if handler.unary_stream
            else grpc.stream_stream_rpc_method_handler
        )
        return factory(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _unary(self, behaviour: Any, method: str) -> Any:
        async def serve(request: Any, context: Any) -> Any:
            state = _state(context)
            try:
                await self._admit(context, method, state)
                return await behaviour(request, context)
            except BaseException as exc:
                await self._fail(exc, context, state)
                raise
            finally:
                self._end(method, state)

        return serve

    def _streaming(self, behaviour: Any, method: str) -> Any:
        async def serve(request: Any, context: Any) -> AsyncIterator[Any]:
            state = _state(context)
            try:
                await self._admit(context, method, state)
                async for item in behaviour(request, context):
                    yield item
            except BaseException as exc:
                await self._fail(exc, context, state)
                raise
            finally:
                self._end(method, state)

        return serve

    async def _admit(self, context: Any, method: str, state: dict[str, Any]) -> None:
        """Send the request id, check the client's token, make sure the gateway started."""
        await context.send_initial_metadata(state["metadata"])
        if self._expected and not method.startswith(_OPEN_PREFIXES):
            offered = str(state.pop("authorization", "")).encode()
            if not hmac.compare_digest(offered, self._expected):
                raise AuthError(
                    "missing or wrong bearer token (metadata 'authorization: Bearer …')"
                )
        await self.gateway.start()

    async def _fail(self, exc: BaseException, context: Any, state: dict[str, Any]) -> None:
        """Map an exception to the call's status (aborting raises grpc's AbortError)."""
        pair = state["metadata"]
        if isinstance(exc, PtxplainError):
            state["code"] = exc.code.grpc_name
            message = client_message(str(exc))
            note(error=message if not _may_echo_bytes(exc) else type(exc).__name__)
            await context.abort(grpc.StatusCode[exc.code.grpc_name], message, pair)
        elif isinstance(exc, asyncio.CancelledError):
            state["code"] = "CANCELLED"
        elif not isinstance(exc, grpc.aio.AbortError) and isinstance(exc, Exception):
            state["code"] = "INTERNAL"
            log.exception("unexpected error")
            message = f"internal error; report request id {state['request_id']}"
            await context.abort(grpc.StatusCode.INTERNAL, message, pair)

    def _end(self, method: str, state: dict[str, Any]) -> None:
        seconds = time.perf_counter() - state["started"]
        name = method.rsplit("/", 1)[-1]
        self.gateway.metrics.observe_request("grpc", name, state["code"], seconds)
        fields = access_fields_var.get() or {}
        if not method.startswith(_OPEN_PREFIXES):
            log.info(
                "grpc %s %s",
                name,
                state["code"],
                extra={
                    "fields": {
                        "api": "grpc",
                        "method": name,
                        "code": state["code"],
                        "duration_ms": round(seconds * 1000.0, 2),
                        **fields,
                    }
                },
            )


def _state(context: Any) -> dict[str, Any]:
    """Per-call state: request id (set in the context variable and metadata), start time."""
    metadata = dict(context.invocation_metadata() or ())
    request_id = new_request_id(metadata.get(REQUEST_ID_HEADER))
    request_id_var.set(request_id)
    access_fields_var.set({})
    pair = ((REQUEST_ID_HEADER, request_id),)
    context.set_trailing_metadata(pair)
    return {
        "started": time.perf_counter(),
        "code": "OK",
        "request_id": request_id,
        "metadata": pair,
        "authorization": metadata.get("authorization", ""),
    }


def _may_echo_bytes(exc: PtxplainError) -> bool:
    """Edge decode errors quote the image's first bytes: log their type, not their text."""
    return isinstance(exc, DecodeError) and not exc.model


# -- the server --------------------------------------------------------------------------------


def _server_options(config: GatewayConfig) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", config.max_request_bytes),
        ("grpc.max_send_message_length", config.max_response_bytes),
        ("grpc.so_reuseport", 0),  # a taken port must be an error, not a shared port
    ]


def _bind(server: grpc.aio.Server, config: GatewayConfig) -> int:
    address = f"{config.host}:{config.grpc_port}"
    try:
        if config.tls is not None:
            pair = (config.tls.key.read_bytes(), config.tls.cert.read_bytes())
            port = server.add_secure_port(address, grpc.ssl_server_credentials([pair]))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(
            f"cannot bind the gateway's gRPC port {address}: {exc} (in use?)"
        ) from exc
    if port == 0:
        raise ConfigError(f"cannot bind the gateway's gRPC port {address} (in use?)")
    return port


async def _set_backend_health(servicer: health.aio.HealthServicer, gateway: Gateway) -> None:
    """One health entry per backend (``backend/<name>``): NOT_SERVING while it cannot be listed."""
    unlisted = {u.backend for u in gateway.catalog.unlisted()}
    for name in gateway.catalog.backends:
        serving = health_pb2.HealthCheckResponse.SERVING
        status = health_pb2.HealthCheckResponse.NOT_SERVING if name in unlisted else serving
        await servicer.set(f"{BACKEND_HEALTH_PREFIX}{name}", status)


def create_server(
    config: GatewayConfig, gateway: Gateway | None = None
) -> tuple[grpc.aio.Server, int]:
    """A bound, not yet started grpc.aio server and its port (``grpc_port: 0`` picks one).

    Without ``gateway`` one is made; it starts (first catalog refresh) on the first call.
    """
    gateway = gateway or Gateway(config)
    server = grpc.aio.server(
        interceptors=[GatewayInterceptor(gateway, config.client_token)],
        options=_server_options(config),
    )
    server.add_generic_rpc_handlers((explainer_handler(ExplainerService(gateway)),))
    oip_name = add_oip_service(server, gateway)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)

    async def on_readiness(ready: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE_NAME):
            await health_servicer.set(service, status)
        await _set_backend_health(health_servicer, gateway)

    gateway.readiness_listeners.append(on_readiness)
    names = (SERVICE_NAME, oip_name, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    return server, _bind(server, config)
