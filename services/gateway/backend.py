"""One TorchServe behind the gateway, on TorchServe's gRPC inference API (grpc.aio).

* one reused channel per backend, opened in the event loop on first use, with explicit message
  size limits (TorchServe's max_request_size / max_response_size, never grpcio's 4 MiB default)
  and a short reconnect backoff, so a backend that comes back is used again within a second;
* a bound on calls in flight: past it a call fails at once with :class:`OverloadedError`
  (RESOURCE_EXHAUSTED / 429) instead of queueing until the client's deadline;
* each call's deadline is what the caller passes (derived from the client's deadline);
* retries only for connection failures — UNAVAILABLE before the request reached TorchServe
  ("failed to connect", "connection refused"). TorchServe itself answers UNAVAILABLE when a
  worker fails, i.e. after a handler saw the request: that is never retried;
* TorchServe's token auth: the inference key from the key file (shared
  :class:`~services.torchserve.auth.TokenSource`); a rejected key is refreshed once (the key
  may have expired) and the call repeated.

The handler's reply bytes are returned as they came (a serialized ``ExplainResult``): the gateway
passes them on without parsing them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Iterator, Mapping
from typing import Any

import grpc

from ptxplain.errors import (
    BackendTimeoutError,
    OverloadedError,
    PtxplainError,
)
from ptxplain.torchserve import inference_pb2
from services.gateway.config import ENVELOPE_BYTES, BackendConfig
from services.torchserve.auth import TokenSource
from services.torchserve.grpc_client import REJECTED_CODES, error_from_rpc

__all__ = ["Backend", "BackendReply", "encode_predictions_request", "is_connection_failure"]

_PREDICTIONS = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions"
# Transport messages grpc core gives when no connection could be made: the request never left.
_NOT_SENT = ("failed to connect", "connection refused", "dns resolution failed", "no route to host")
_FIRST_BACKOFF_S = 0.05


@dataclasses.dataclass(frozen=True)
class BackendReply:
    """TorchServe's answer for one model: the handler's bytes, or the error that stopped it."""

    raw: bytes | None
    attempts: int
    backend_ms: float
    error: PtxplainError | None = None


def encode_predictions_request(inputs: Mapping[str, bytes]) -> bytes:
    """The model-independent part of a ``PredictionsRequest`` (the image and the options).

    Serialized once per request and shared by every model's call; each call prepends its
    ``model_name`` field (protobuf merges concatenated messages field by field).
    """
    return inference_pb2.PredictionsRequest(input=dict(inputs)).SerializeToString()


def _with_model(model: str, shared: bytes) -> bytes:
    return inference_pb2.PredictionsRequest(model_name=model).SerializeToString() + shared


def is_connection_failure(exc: grpc.RpcError) -> bool:
    """Whether the call failed before reaching TorchServe (so a retry cannot repeat work)."""
    if exc.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    details = (exc.details() or "").lower()
    return any(marker in details for marker in _NOT_SENT)


def _error(exc: grpc.RpcError, model: str, backend: str) -> PtxplainError:
    """A ptxplain error for a failed TorchServe call."""
    code, details = exc.code(), (exc.details() or "").strip()
    message = (
        f"backend {backend!r}: TorchServe {code.name}: {details.splitlines()[0] if details else ''}"
    )
    return error_from_rpc(code, details, model, message)


class Backend:
    """Calls to one TorchServe; create inside the event loop's lifetime, ``close()`` after."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.name = config.name
        self.in_flight = 0
        self.tokens: TokenSource | None = None
        if config.key_file is not None:
            self.tokens = TokenSource(config.key_file, config.management, "inference")
        self._channel: grpc.aio.Channel | None = None
        self._predict: grpc.aio.UnaryUnaryMultiCallable | None = None

    def _channel_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_send_message_length", self.config.max_request_bytes),
            ("grpc.max_receive_message_length", self.config.max_response_bytes + ENVELOPE_BYTES),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]

    def _method(self) -> grpc.aio.UnaryUnaryMultiCallable:
        if self._predict is None:
            self._channel = grpc.aio.insecure_channel(
                self.config.grpc, options=self._channel_options()
            )
            self._predict = self._channel.unary_unary(
                _PREDICTIONS,
                request_serializer=None,  # requests arrive serialized (see _with_model)
                response_deserializer=inference_pb2.PredictionResponse.FromString,
            )
        return self._predict

    @contextlib.contextmanager
    def slot(self, model: str) -> Iterator[None]:
        """Hold one of the backend's in-flight slots; :class:`OverloadedError` when none is free."""
        if self.in_flight >= self.config.max_in_flight:
            raise OverloadedError(
                f"backend {self.name!r} already has {self.in_flight} calls in flight (bound "
                f"{self.config.max_in_flight}); retry later",
                model=model,
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    async def predict(self, model: str, shared_request: bytes, timeout_s: float) -> BackendReply:
        """One model's prediction. A failed call is an answer too: ``reply.error`` says why."""
        started = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        request = _with_model(model, shared_request)
        attempts, backoff = 0, _FIRST_BACKOFF_S
        while True:
            attempts += 1
            try:
                response = await self._call_with_token(request, deadline - time.monotonic(), model)
                return BackendReply(response.prediction, attempts, _ms(started))
            except grpc.RpcError as exc:
                retry = is_connection_failure(exc) and attempts <= self.config.connect_retries
                if not retry or deadline - time.monotonic() <= backoff:
                    return BackendReply(None, attempts, _ms(started), _error(exc, model, self.name))
            except PtxplainError as exc:  # no time left, or the key file cannot be read
                exc.model = exc.model or model
                return BackendReply(None, attempts, _ms(started), exc)
            await asyncio.sleep(backoff)
            backoff *= 2

    async def _call_with_token(self, request: bytes, timeout_s: float, model: str) -> Any:
        if timeout_s <= 0:
            raise BackendTimeoutError(
                f"backend {self.name!r}: the model's deadline passed before the call", model=model
            )
        method = self._method()
        if self.tokens is None:
            return await method(request, timeout=timeout_s)
        sent = self.tokens.current()
        try:
            return await method(request, timeout=timeout_s, metadata=_bearer(sent))
        except grpc.RpcError as exc:
            if exc.code() not in REJECTED_CODES:
                raise
        fresh = await asyncio.to_thread(self.tokens.refresh, sent)
        return await method(request, timeout=timeout_s, metadata=_bearer(fresh))

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._predict = None


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)
