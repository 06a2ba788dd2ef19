"""One TorchServe behind the gateway, on TorchServe's gRPC inference API (grpc.aio).

* one reused channel per backend, opened in the event loop on first use, with explicit message
  size limits (TorchServe's max_request_size / max_response_size, never grpcio's 4 MiB default)
  and a short reconnect backoff, so a backend that comes back is used again within a second;
* a bound on calls in flight: past it a call fails at once with :class:`OverloadedError`
  (RESOURCE_EXHAUSTED / 429) instead of queueing until the client's deadline;
* at most ``capacity`` calls per model handed to TorchServe at once (one batch per worker:
  batch size x workers, learnt by the catalog, so that TorchServe's batches can fill; or
  ``max_sent_per_model``); the rest wait in the gateway, where
  cancelling really cancels. TorchServe 0.12 runs every job it has queued even when the caller
  left (a cancelled gRPC call only suppresses its answer), so a call already handed over is not
  abandoned when its client goes: it runs on, discarded, and holds its slot until TorchServe
  answers. Cancel-and-resubmit cannot pass the bounds, and a storm of cancelled calls leaves at
  most ``capacity`` calls per model behind;
* each call's deadline is what the caller passes (derived from the client's deadline); past it
  the caller gets DEADLINE_EXCEEDED at once, while the call itself, like a cancelled one, keeps
  its slot until TorchServe answers (at most the model's own timeout);
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
import collections
import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
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

__all__ = [
    "Backend",
    "BackendReply",
    "DispatchGate",
    "encode_predictions_request",
    "is_connection_failure",
]

_PREDICTIONS = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions"
# Transport messages grpc core gives when no connection could be made: the request never left.
_NOT_SENT = (
    "failed to connect",
    "connection refused",
    "dns resolution failed",
    "no route to host",
    "before receiving settings frame",
)
_FIRST_BACKOFF_S = 0.05
_UNKNOWN_CAPACITY = 1  # calls per model handed over until the catalog learns its capacity


@dataclasses.dataclass(frozen=True)
class BackendReply:
    """TorchServe's answer for one model: the handler's bytes, or the error that stopped it."""

    raw: bytes | None
    attempts: int
    backend_ms: float
    error: PtxplainError | None = None
    # The call never reached TorchServe (connection refused / failed): the whole backend is down.
    unreachable: bool = False


class DispatchGate:
    """At most ``limit`` calls of one model handed to TorchServe; the others wait here, in order,
    and a waiter that is cancelled simply leaves the line."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        if self.sent < self.limit and not self._waiters:
            self.sent += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a permit while being cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.sent -= 1
        self._wake()

    def resize(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.sent < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.sent += 1
                waiter.set_result(None)

    @property
    def waiting(self) -> int:
        return len(self._waiters)


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
        # Called with the new count whenever ``in_flight`` changes (the gateway's gauge).
        self.on_in_flight: Callable[[int], None] = lambda count: None
        self._gates: dict[str, DispatchGate] = {}
        self._capacity: dict[str, int] = {}
        self._lingering: set[asyncio.Task[Any]] = set()
        self.tokens: TokenSource | None = None
        if config.key_file is not None:
            self.tokens = TokenSource(config.key_file, config.management, "inference")
        self._channel: grpc.aio.Channel | None = None
        self._predict: grpc.aio.UnaryUnaryMultiCallable | None = None

    def _channel_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_send_message_length", self.config.max_request_bytes),
            ("grpc.max_receive_message_length", self.config.max_response_bytes + ENVELOPE_BYTES),
            # Reconnect soon after TorchServe comes back. grpc core reads
            # grpc.min_reconnect_backoff_ms as the minimum *connect timeout*, so it stays at
            # its default (20 s): a small value there failed every connection to a busy
            # TorchServe that took longer than that to send its SETTINGS frame.
            ("grpc.initial_reconnect_backoff_ms", 100),
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

    # -- bounds ---------------------------------------------------------------------------------

    def _take_slot(self, model: str) -> None:
        if self.in_flight >= self.config.max_in_flight:
            raise OverloadedError(
                f"backend {self.name!r} already has {self.in_flight} calls in flight (bound "
                f"{self.config.max_in_flight}); retry later",
                model=model,
            )
        self.in_flight += 1
        self.on_in_flight(self.in_flight)

    def _free_slot(self) -> None:
        self.in_flight -= 1
        self.on_in_flight(self.in_flight)

    @contextlib.contextmanager
    def slot(self, model: str) -> Iterator[None]:
        """Hold one of the backend's in-flight slots; :class:`OverloadedError` when none is free."""
        self._take_slot(model)
        try:
            yield
        finally:
            self._free_slot()

    def set_capacity(self, model: str, calls: int) -> None:
        """How many calls of ``model`` are worth handing to TorchServe at once."""
        if calls > 0:
            self._capacity[model] = calls
            if self.config.max_sent_per_model is None and model in self._gates:
                self._gates[model].resize(calls)

    def gate(self, model: str) -> DispatchGate:
        if model not in self._gates:
            limit = self.config.max_sent_per_model or self._capacity.get(model, _UNKNOWN_CAPACITY)
            self._gates[model] = DispatchGate(limit)
        return self._gates[model]

    # -- calls ----------------------------------------------------------------------------------

    async def predict(self, model: str, shared_request: bytes, timeout_s: float) -> BackendReply:
        """One model's prediction. A failed call is an answer too: ``reply.error`` says why;
        past the in-flight bound it is :class:`OverloadedError` with no attempt made."""
        started = time.perf_counter()
        try:
            self._take_slot(model)
        except OverloadedError as exc:
            return BackendReply(None, 0, 0.0, exc)
        release = _Once(self._free_slot)
        try:
            return await self._attempts(model, shared_request, timeout_s, started, release)
        finally:
            release.unless_kept()

    async def _attempts(
        self, model: str, shared: bytes, timeout_s: float, started: float, release: _Once
    ) -> BackendReply:
        deadline = time.monotonic() + timeout_s
        request = _with_model(model, shared)
        attempts, backoff = 0, _FIRST_BACKOFF_S
        while True:
            attempts += 1
            try:
                response = await self._handed_over(model, request, deadline, release)
                return BackendReply(response.prediction, attempts, _ms(started))
            except grpc.RpcError as exc:
                down = is_connection_failure(exc)
                retry = down and attempts <= self.config.connect_retries
                if not retry or deadline - time.monotonic() <= backoff:
                    error = _error(exc, model, self.name)
                    return BackendReply(None, attempts, _ms(started), error, unreachable=down)
            except PtxplainError as exc:  # no time left, or the key file cannot be read
                exc.model = exc.model or model
                return BackendReply(None, attempts, _ms(started), exc)
            await asyncio.sleep(backoff)
            backoff *= 2

    async def _handed_over(
        self, model: str, request: bytes, deadline: float, release: _Once
    ) -> Any:
        """One call handed to TorchServe once the model's gate lets it through. If the caller
        leaves or its deadline passes, the call runs on and keeps the slot until it ends."""
        gate = self.gate(model)
        try:
            await asyncio.wait_for(gate.acquire(), timeout=max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            raise BackendTimeoutError(
                f"backend {self.name!r}: the deadline passed while {gate.waiting} calls waited "
                "for the model",
                model=model,
            ) from None
        limit = max(deadline - time.monotonic(), 0.0)
        task = asyncio.ensure_future(
            self._call_with_token(request, max(limit, self.config.linger_s), model)
        )
        task.add_done_callback(lambda _: gate.release())
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout=limit)
        except asyncio.CancelledError:
            self._linger(task, release)
            raise
        except TimeoutError:
            self._linger(task, release)
            raise BackendTimeoutError(
                f"backend {self.name!r}: the model's deadline passed", model=model
            ) from None

    def _linger(self, task: asyncio.Task[Any], release: _Once) -> None:
        """Keep the slot until TorchServe answers the abandoned call; drop the answer."""
        if task.done():
            return
        release.keep()
        self._lingering.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._lingering.discard(finished)
            if not finished.cancelled():
                finished.exception()  # retrieved: an abandoned call's failure is nobody's
            release()

        task.add_done_callback(done)

    @property
    def lingering(self) -> int:
        """Calls whose caller left, still running in TorchServe."""
        return len(self._lingering)

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
        for task in list(self._lingering):
            task.cancel()
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._predict = None


class _Once:
    """A release run exactly once: at the end of the call, or later by whoever ``keep``s it."""

    def __init__(self, action: Callable[[], None]) -> None:
        self._action: Callable[[], None] | None = action
        self._kept = False

    def keep(self) -> None:
        self._kept = True

    def unless_kept(self) -> None:
        if not self._kept:
            self()

    def __call__(self) -> None:
        action, self._action = self._action, None
        if action is not None:
            action()


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)
