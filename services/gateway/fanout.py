"""The gateway's core, shared by the gRPC service and its HTTP/JSON twin: one request fans out
to every selected model concurrently; each model's outcome (result bytes or error) is its own.

A model's deadline is derived from the client's: what is left of it, less a small reserve for
the gateway to answer, capped by the model's configured timeout. A failing, slow or shed model
never fails the others; the request as a whole fails only when every model failed
(:func:`all_failed_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from google.protobuf.message import DecodeError as ProtobufDecodeError

from ptxplain import errors
from ptxplain.errors import BackendError, Code, InternalError, PtxplainError
from ptxplain.explain.options import ExplainOptions
from ptxplain.v1 import explainer_pb2 as epb
from ptxplain.v1 import result_pb2 as pb
from services.gateway.backend import Backend, BackendReply
from services.gateway.catalog import Catalog, MetadataSource, ModelInfo, TorchServeMetadata
from services.gateway.config import GatewayConfig
from services.gateway.edge import ExplainCall, check_image
from services.gateway.metrics import GatewayMetrics

__all__ = ["Gateway", "ModelOutcome", "all_failed_error"]

log = logging.getLogger(__name__)


def _ms(start: float, end: float | None = None) -> float:
    return ((time.perf_counter() if end is None else end) - start) * 1000.0


@dataclasses.dataclass(frozen=True)
class ModelOutcome:
    """One model's answer: the handler's result bytes (``raw``) and/or an error status."""

    model: str
    code: Code
    message: str
    http_status: int
    raw: bytes | None
    timings: epb.GatewayTimings
    architecture: str
    trained: bool
    handler_timings: pb.Timings | None = None
    trained_on: str = ""

    @property
    def ok(self) -> bool:
        return self.code == Code.OK

    def wire(self) -> epb.ModelResultBytes:
        """This model's ``ModelResult``, with the handler's result bytes as they came."""
        return epb.ModelResultBytes(
            model=self.model,
            status=pb.Status(
                code=int(self.code), message=self.message, http_status=self.http_status
            ),
            result=self.raw,
            gateway_timings=self.timings,
            architecture=self.architecture,
            trained=self.trained,
            trained_on=self.trained_on,
        )


def _code(value: int) -> Code:
    try:
        return Code(value)
    except ValueError:
        return Code.UNKNOWN


def _parse_head(
    model: str, reply: BackendReply
) -> tuple[BackendReply, epb.ExplainResultHead | None]:
    """The result's head fields; bytes that are no ExplainResult turn the reply into an error."""
    try:
        return reply, epb.ExplainResultHead.FromString(reply.raw or b"")
    except ProtobufDecodeError as exc:
        message = f"model {model!r} answered bytes that are no ExplainResult: {exc}"
        return dataclasses.replace(reply, raw=None, error=InternalError(message, model=model)), None


def all_failed_error(outcomes: Sequence[ModelOutcome]) -> PtxplainError | None:
    """None when a model succeeded; else one error for the request: the models' common code
    (and HTTP status) when they agree, UNAVAILABLE when they differ."""
    if not outcomes or any(o.ok for o in outcomes):
        return None
    codes = {o.code for o in outcomes}
    code = codes.pop() if len(codes) == 1 else Code.UNAVAILABLE
    summary = "; ".join(f"{o.model}: {o.message}" for o in outcomes)
    error = errors.error_for_code(code, f"every model failed: {summary}")
    statuses = {o.http_status for o in outcomes}
    if error.code == code and len(statuses) == 1:
        error.http = statuses.pop()
    return error


class Gateway:
    """Backends, catalog and metrics of one gateway; ``start()`` in the event loop."""

    def __init__(self, config: GatewayConfig, metadata: MetadataSource | None = None) -> None:
        self.config = config
        self.metrics = GatewayMetrics()
        self.backends = [Backend(b) for b in config.backends]
        for backend in self.backends:
            backend.on_in_flight = self.metrics.in_flight.labels(backend.name).set
        self.catalog = Catalog(self.backends, metadata or TorchServeMetadata())
        # Awaited with the readiness after each refresh (the gRPC health service listens).
        self.readiness_listeners: list[Callable[[bool], Awaitable[None]]] = []
        self._refresher: asyncio.Task[None] | None = None
        self._announced: bool | None = None
        self._draining = False
        self._start_lock: asyncio.Lock | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """First catalog refresh, then keep refreshing in the background (idempotent)."""
        if self._refresher is not None:
            return
        self._start_lock = self._start_lock or asyncio.Lock()
        async with self._start_lock:
            if self._refresher is None:
                await self.refresh()
                self._refresher = asyncio.create_task(self._refresh_forever())

    async def refresh(self) -> None:
        await self.catalog.refresh()
        await self._announce(force=True)

    async def _announce(self, force: bool = False) -> None:
        """Tell the listeners (gRPC health) the readiness: after each refresh, and as soon as
        what calls observe changes it."""
        for info in self.catalog.models():
            self.metrics.model_ready.labels(info.name).set(int(info.ready))
        unlisted = {u.backend: u.reason for u in self.catalog.unlisted()}
        self.metrics.observe_unlisted(self.catalog.backends, unlisted)
        ready = self.ready()
        if not force and ready == self._announced:
            return
        self._announced = ready
        for listener in self.readiness_listeners:
            await listener(ready)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.catalog_refresh_s)
            try:
                await self.refresh()
            except Exception:  # a bug in a refresh must not stop the next one
                log.exception("catalog refresh failed")

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        for backend in self.backends:
            await backend.close()
        self.catalog.source.close()

    def ready(self) -> bool:
        """At least one model is ready, and the gateway is not shutting down."""
        return not self._draining and bool(self.catalog.ready_models())

    async def drain(self) -> None:
        """Report not ready from now on (health NOT_SERVING, /readyz 503): shutting down."""
        self._draining = True
        self._announced = False
        for listener in self.readiness_listeners:
            await listener(False)

    # -- requests -------------------------------------------------------------------------------

    async def prepare(
        self,
        *,
        request_id: str,
        image: bytes,
        models: Sequence[str],
        options: ExplainOptions,
        received: float,
        timeout_s: float | None,
    ) -> ExplainCall:
        """Edge checks: image, model names; raises before any model is asked."""
        await self.start()
        image_format = check_image(image, self.config.max_image_bytes)
        names = await self._resolve(models)
        if not names:
            raise BackendError("no model is ready; see ListModels / GET /v1/models")
        return ExplainCall.build(
            request_id=request_id,
            image=image,
            models=names,
            options=options,
            image_format=image_format,
            received=received,
            timeout_s=timeout_s,
        )

    async def _resolve(self, models: Sequence[str]) -> list[str]:
        try:
            return self.catalog.resolve(models)
        except errors.UnknownModelError:
            if time.monotonic() - self.catalog.refreshed_at < 1.0:
                raise
        await self.refresh()  # a model may have been added since the last refresh
        return self.catalog.resolve(models)

    async def outcomes(self, call: ExplainCall) -> AsyncIterator[ModelOutcome]:
        """Every model's outcome, in completion order; cancelling stops the calls left."""
        tasks = [asyncio.create_task(self._run_model(call, m)) for m in call.models]
        try:
            for next_done in asyncio.as_completed(tasks):
                yield await next_done
        finally:
            for task in tasks:
                task.cancel()

    async def explain(self, call: ExplainCall) -> list[ModelOutcome]:
        """Every model's outcome, in the order the models were asked for."""
        return list(await asyncio.gather(*(self._run_model(call, m) for m in call.models)))

    def _timeout_s(self, model: str, call: ExplainCall) -> float:
        limit = self.config.timeout_for(model)
        if call.deadline is None:
            return limit
        left = call.deadline - time.monotonic()
        reserve = min(self.config.deadline_reserve_ms / 1000.0, 0.1 * max(left, 0.0))
        return min(limit, left - reserve)

    async def _run_model(self, call: ExplainCall, model: str) -> ModelOutcome:
        sent = time.perf_counter()
        queue_ms = _ms(call.received, sent)
        info = self.catalog.get(model)
        backend = self.catalog.backend_for(model)
        reply = await self._call(backend, model, call)
        if isinstance(reply.error, errors.OverloadedError) and not reply.attempts:
            self.metrics.shed.labels(backend.name, model).inc()
        outcome = self._outcome(model, info, reply, queue_ms)
        self._observe(backend, outcome, reply)
        await self._announce()
        return outcome

    async def _call(self, backend: Backend, model: str, call: ExplainCall) -> BackendReply:
        timeout = self._timeout_s(model, call)
        if timeout <= 0:
            error = errors.BackendTimeoutError(
                "the client's deadline leaves no time to call the model", model=model
            )
            return BackendReply(None, 0, 0.0, error)
        return await backend.predict(model, call.shared_request, timeout)

    def _outcome(
        self, model: str, info: ModelInfo, reply: BackendReply, queue_ms: float
    ) -> ModelOutcome:
        answered = time.perf_counter()
        head = None
        if reply.error is None:
            reply, head = _parse_head(model, reply)
        if head is not None:
            code = _code(head.status.code)
            message, trained, handler = head.status.message, head.trained, head.timings
            http = head.status.http_status or errors.http_status(code)
        else:
            assert reply.error is not None
            code, http = reply.error.code, reply.error.http_status
            message = errors.client_message(reply.error.message)
            trained, handler = info.trained, None
        timings = epb.GatewayTimings(
            queue_ms=queue_ms,
            backend_ms=reply.backend_ms,
            gateway_ms=queue_ms + _ms(answered),
            attempts=reply.attempts,
        )
        return ModelOutcome(
            model,
            code,
            message,
            http,
            reply.raw,
            timings,
            info.architecture,
            trained,
            handler,
            trained_on=info.trained_on,
        )

    def _observe(self, backend: Backend, outcome: ModelOutcome, reply: BackendReply) -> None:
        self.metrics.observe_model(
            outcome.model, outcome.code.name, outcome.timings, outcome.handler_timings
        )
        error = reply.error
        if error is None:
            self.catalog.observe(outcome.model, True)
            return
        if not isinstance(error, errors.OverloadedError) or reply.attempts:
            self.metrics.backend_errors.labels(backend.name, outcome.model, error.code.name).inc()
        if reply.unreachable:  # the backend is down: none of its models can answer
            self.catalog.observe_backend(backend.name, False, str(error))
        elif type(error) is BackendError:  # failing: not ready until it answers
            self.catalog.observe(outcome.model, False, str(error))
