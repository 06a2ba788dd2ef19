"""A Locust user on the gateway's gRPC API (``ptxplain.v1.Explainer``).

Locust runs users as gevent greenlets; grpcio cooperates only after
``grpc.experimental.gevent.init_gevent()``, which the locustfile calls before any channel
exists. Each user holds its own channel (its own HTTP/2 connection), sends the bearer token as
metadata, and reports every call to Locust as request type ``grpc`` under the task's name
(``[shed]`` / ``[partly shed]`` appended for shed answers; loadtest/outcome.py).
"""

from __future__ import annotations

import itertools
import time
from typing import Any, ClassVar

import gevent
import grpc
from locust import User, task

from loadtest.images import TestImage
from loadtest.outcome import Outcome, OutcomeKind, classify_grpc, code_name, request_name
from loadtest.settings import RunSettings
from loadtest.tasks import ScenarioTasks
from loadtest.workload import Workload
from ptxplain.v1 import explainer_pb2 as epb
from ptxplain.v1 import explainer_pb2_grpc as egrpc

__all__ = ["GrpcExplainUser", "LoadTestFailure", "size_gevent_threadpool"]

_MAX_MESSAGE = 256 * 1024 * 1024
_USER_SEEDS = itertools.count()


class LoadTestFailure(Exception):
    """What Locust records as a failed request (the outcome's detail)."""


def size_gevent_threadpool(users: int) -> int:
    """Give gevent's hub threadpool a thread per user (and some slack); returns its size.

    Under gevent, grpcio waits for each call's completion in that threadpool (10 threads by
    default). With more calls outstanding than threads, a new call waits for a free thread and
    its measured time includes the wait: at 20 users with long Explain calls in flight, a 1 ms
    ListModels measured 2 s at p95 (docs/loadtest.md)."""
    pool = gevent.get_hub().threadpool
    pool.maxsize = max(pool.maxsize, users + 8)
    return int(pool.maxsize)


def _channel(settings: RunSettings) -> grpc.Channel:
    options = [
        ("grpc.max_send_message_length", _MAX_MESSAGE),
        ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ]
    if settings.root_certificates is not None:
        credentials = grpc.ssl_channel_credentials(settings.root_certificates)
        return grpc.secure_channel(settings.grpc_target, credentials, options=options)
    return grpc.insecure_channel(settings.grpc_target, options=options)


class GrpcExplainUser(ScenarioTasks, User):
    """Explain (all models / one model) and list models over gRPC, per the scenario's mix."""

    # Set by the locustfile on Locust's init event, before any user starts.
    settings: ClassVar[RunSettings]
    images: ClassVar[list[TestImage]] = []

    def wait_time(self) -> float:
        return self.workload.wait_s()

    def on_start(self) -> None:
        self.workload = Workload(self.settings.scenario, self.images, next(_USER_SEEDS))
        self.channel = _channel(self.settings)
        self.stub = egrpc.ExplainerStub(self.channel)
        self.list_models()

    def on_stop(self) -> None:
        self.channel.close()

    @task
    def turn(self) -> None:
        self.take_turn()

    def _no_model(self, name: str, detail: str) -> None:
        self._record(name, Outcome(OutcomeKind.FAILED, detail), 0.0, 0)

    def list_models(self) -> None:
        started = time.perf_counter()
        deadline = self.settings.scenario.list_deadline_s
        try:
            response = self.stub.ListModels(
                epb.ListModelsRequest(), timeout=deadline, metadata=self.settings.metadata
            )
        except grpc.RpcError as exc:
            self._record_error("list models", exc, started)
            return
        self.workload.ready_models = tuple(m.name for m in response.models if m.ready)
        self._record("list models", Outcome(OutcomeKind.OK), _ms(started), response.ByteSize())

    # -- calls and reporting ------------------------------------------------------------------

    def _request(self, image: TestImage, models: list[str]) -> epb.ExplainRequest:
        scenario = self.settings.scenario
        options = epb.ExplainOptions(
            methods=list(scenario.methods), logits_only=scenario.logits_only
        )
        return epb.ExplainRequest(image=image.data, models=models, options=options)

    def _explain(self, name: str, models: list[str]) -> None:
        request = self._request(self.workload.next_image(), models)
        started = time.perf_counter()
        try:
            response = self.stub.Explain(
                request,
                timeout=self.settings.scenario.explain_deadline_s,
                metadata=self.settings.metadata,
            )
        except grpc.RpcError as exc:
            self._record_error(name, exc, started)
            return
        codes = {r.model: code_name(r.status.code) for r in response.results}
        outcome = classify_grpc("OK", "", codes)
        self._record(name, outcome, _ms(started), response.ByteSize())

    def _record_error(self, name: str, exc: grpc.RpcError, started: float) -> None:
        code: Any = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        details = exc.details() if hasattr(exc, "details") else str(exc)
        outcome = classify_grpc(code.name, details or "", {})
        self._record(name, outcome, _ms(started), 0)

    def _record(self, task_name: str, outcome: Outcome, elapsed_ms: float, size: int) -> None:
        self.environment.events.request.fire(
            request_type="grpc",
            name=request_name(task_name, outcome),
            response_time=elapsed_ms,
            response_length=size,
            exception=LoadTestFailure(outcome.detail) if outcome.failed else None,
            context={},
        )


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
