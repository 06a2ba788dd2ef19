"""TorchServe's gRPC inference API: a blocking client (the gateway's own grpc.aio calls are in
services/gateway/backend.py), and :func:`error_from_rpc`, what a failed TorchServe call means.

The client reuses one channel (message-size caps from the config), sends the bearer key as
``authorization`` metadata and retries once after PERMISSION_DENIED / UNAUTHENTICATED with a
refreshed key. A prediction is the handler's ``ExplainResult`` with its per-item HTTP status (see
client.py).
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf import empty_pb2

from ptxplain.errors import (
    BackendError,
    BackendTimeoutError,
    ImageTooLargeError,
    PtxplainError,
    UnknownModelError,
    error_for_code,
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
    "GrpcClient",
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
    """A failed TorchServe gRPC call as a ptxplain error: TorchServe 0.12's own quirks first,
    then the one status table (:func:`ptxplain.errors.error_for_code`).

    * an unknown model is INTERNAL + ModelNotFoundException;
    * a worker that died mid-batch is "Worker died." under RESOURCE_EXHAUSTED (its HTTP 413) or
      UNKNOWN (137): the model is unavailable, not busy;
    * RESOURCE_EXHAUSTED otherwise means a message over a size cap (TorchServe has no 429).
    """
    lowered = details.lower()
    if code == grpc.StatusCode.NOT_FOUND or "modelnotfoundexception" in lowered:
        return UnknownModelError(message, model=model)
    if "worker died" in lowered or "worker error" in lowered:
        return BackendError(f"{message} (the model's worker died; it restarts)", model=model)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return BackendTimeoutError(f"{message} (the model's deadline passed)", model=model)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        too_large = "larger than max" in lowered or "message length" in lowered
        return (
            ImageTooLargeError(message, model=model)
            if too_large
            else BackendError(message, model=model)
        )
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        return BackendError(message, model=model)  # TorchServe's frontend or worker failed
    return error_for_code(code.value[0], message, model=model)


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
