"""TorchServe's gRPC inference API: a blocking client and a grpc.aio one (the gateway's).

Both reuse one channel (message-size caps from the config), send the bearer key as ``authorization``
metadata and retry once after PERMISSION_DENIED / UNAUTHENTICATED with a refreshed key. A
prediction is the handler's ``ExplainResult`` with its per-item HTTP status (see client.py).
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf import empty_pb2

from ptxplain.errors import (
    AuthError,
    BackendError,
    BackendTimeoutError,
    ImageTooLargeError,
    InvalidInputError,
    OverloadedError,
    PtxplainError,
    UnknownModelError,
)
from ptxplain.explain.options import ExplainOptions
from ptxplain.torchserve import inference_pb2, inference_pb2_grpc
from services.torchserve.auth import TokenSource, token_source
from services.torchserve.client import Prediction, parse_result
from services.torchserve.config import (
    DEFAULT_MAX_REQUEST_SIZE,
    DEFAULT_MAX_RESPONSE_SIZE,
    TorchServeConfig,
)

__all__ = [
    "REJECTED_CODES",
    "AsyncGrpcClient",
    "GrpcClient",
    "aio_grpc_client",
    "error_from_rpc",
    "grpc_client",
]

_ENVELOPE_SLACK = 64 * 1024  # PredictionResponse framing around the handler's bytes
REJECTED_CODES = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


def _channel_options(max_send_bytes: int, max_receive_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", max_send_bytes),
        ("grpc.max_receive_message_length", max_receive_bytes + _ENVELOPE_SLACK),
    ]


def _predictions_request(model: str, image: bytes, options: ExplainOptions | None) -> Any:
    inputs = {
        key: value.encode() for key, value in (options or ExplainOptions()).to_inputs().items()
    }
    inputs["data"] = image
    return inference_pb2.PredictionsRequest(model_name=model, input=inputs)


def _prediction(response: Any, model: str) -> Prediction:
    result = parse_result(response.prediction, model)
    return Prediction(result, result.status.http_status or 200)


def error_from_rpc(code: grpc.StatusCode, details: str, model: str, message: str) -> PtxplainError:
    """The one mapping of a failed TorchServe gRPC call to a ptxplain error."""
    # TorchServe 0.12 answers an unknown model with INTERNAL + ModelNotFoundException.
    unknown = "ModelNotFoundException" in details or "model not found" in details.lower()
    if code == grpc.StatusCode.NOT_FOUND or unknown:
        return UnknownModelError(message, model=model)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return BackendTimeoutError(f"{message} (the model's deadline passed)", model=model)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        too_large = "larger than max" in details or "message length" in details.lower()
        return (ImageTooLargeError if too_large else OverloadedError)(message, model=model)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidInputError(message, model=model)
    if code in REJECTED_CODES:
        return AuthError(message, model=model)
    return BackendError(message, model=model)


def _grpc_error(exc: grpc.RpcError, model: str) -> PtxplainError:
    code, details = exc.code(), exc.details() or ""
    return error_from_rpc(code, details, model, f"TorchServe gRPC {code.name}: {details}")


def _metadata(key: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),) if key else ()


class GrpcClient:
    """Blocking gRPC client on one reused channel."""

    def __init__(
        self,
        target: str,
        token: TokenSource | None = None,
        timeout_s: float = 60.0,
        max_send_bytes: int = DEFAULT_MAX_REQUEST_SIZE,
        max_receive_bytes: int = DEFAULT_MAX_RESPONSE_SIZE,
    ) -> None:
        self.target = target
        self.token = token
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(
            target, options=_channel_options(max_send_bytes, max_receive_bytes)
        )
        self._stub = inference_pb2_grpc.InferenceAPIsServiceStub(self._channel)

    def _call(self, method: Any, request: Any, timeout_s: float, model: str) -> Any:
        sent = self.token.current() if self.token else None
        try:
            try:
                return method(request, timeout=timeout_s, metadata=_metadata(sent))
            except grpc.RpcError as exc:
                if not (self.token and sent and exc.code() in REJECTED_CODES):
                    raise
                fresh = self.token.refresh(sent)
                return method(request, timeout=timeout_s, metadata=_metadata(fresh))
        except grpc.RpcError as exc:
            raise _grpc_error(exc, model) from exc

    def predict(
        self,
        model: str,
        image: bytes,
        options: ExplainOptions | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Prediction:
        request = _predictions_request(model, image, options)
        response = self._call(self._stub.Predictions, request, timeout_s or self.timeout_s, model)
        return _prediction(response, model)

    def ping(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        response = self._call(self._stub.Ping, empty_pb2.Empty(), timeout_s or self.timeout_s, "")
        return dict(json.loads(response.health))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncGrpcClient:
    """gRPC client on ``grpc.aio``; the channel is opened on first use, inside the event loop."""

    def __init__(
        self,
        target: str,
        token: TokenSource | None = None,
        timeout_s: float = 60.0,
        max_send_bytes: int = DEFAULT_MAX_REQUEST_SIZE,
        max_receive_bytes: int = DEFAULT_MAX_RESPONSE_SIZE,
    ) -> None:
        self.target = target
        self.token = token
        self.timeout_s = timeout_s
        self._options = _channel_options(max_send_bytes, max_receive_bytes)
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    def _ensure_stub(self) -> Any:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self.target, options=self._options)
            self._stub = inference_pb2_grpc.InferenceAPIsServiceStub(self._channel)
        return self._stub

    async def _call(self, name: str, request: Any, timeout_s: float, model: str) -> Any:
        import asyncio

        method = getattr(self._ensure_stub(), name)
        sent = self.token.current() if self.token else None
        try:
            try:
                return await method(request, timeout=timeout_s, metadata=_metadata(sent))
            except grpc.RpcError as exc:
                if not (self.token and sent and exc.code() in REJECTED_CODES):
                    raise
                fresh = await asyncio.to_thread(self.token.refresh, sent)
                return await method(request, timeout=timeout_s, metadata=_metadata(fresh))
        except grpc.RpcError as exc:
            raise _grpc_error(exc, model) from exc

    async def predict(
        self,
        model: str,
        image: bytes,
        options: ExplainOptions | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Prediction:
        request = _predictions_request(model, image, options)
        response = await self._call("Predictions", request, timeout_s or self.timeout_s, model)
        return _prediction(response, model)

    async def ping(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        response = await self._call("Ping", empty_pb2.Empty(), timeout_s or self.timeout_s, "")
        return dict(json.loads(response.health))

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None

    async def __aenter__(self) -> AsyncGrpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def grpc_client(
    config: TorchServeConfig, token: TokenSource | None = None, **kw: Any
) -> GrpcClient:
    return GrpcClient(
        config.grpc_inference_target,
        token or token_source(config),
        max_send_bytes=config.max_request_size,
        max_receive_bytes=config.max_response_size,
        **kw,
    )


def aio_grpc_client(
    config: TorchServeConfig, token: TokenSource | None = None, **kw: Any
) -> AsyncGrpcClient:
    return AsyncGrpcClient(
        config.grpc_inference_target,
        token or token_source(config),
        max_send_bytes=config.max_request_size,
        max_receive_bytes=config.max_response_size,
        **kw,
    )
