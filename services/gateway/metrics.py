"""Prometheus metrics of one gateway (its own registry, so several gateways can share a process).

ptxplain_gateway_requests_total{api,method,code}        requests answered, by status
ptxplain_gateway_request_seconds{api,method}            request latency
ptxplain_gateway_model_results_total{model,code}        per-model results, by status
ptxplain_gateway_stage_seconds{model,stage}             queue, backend, gateway (the gateway's
                                                        own time) and the handler's decode,
                                                        preprocess, forward_cam, encode
ptxplain_gateway_in_flight{backend}                     backend calls in flight
ptxplain_gateway_shed_total{backend,model}              calls refused past the in-flight bound
ptxplain_gateway_backend_errors_total{backend,model,code}  failed backend calls
ptxplain_gateway_model_ready{model}                     1 when the catalog says ready
ptxplain_gateway_build_info{version,torch,torchserve}   1; versions beside the gateway
                                                        ("absent" where a package is not)
process_* (CPU, memory, open files, start time), python_info and python_gc_*: the standard
collectors, on this registry too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ptxplain.build_info import versions
from ptxplain.v1 import explainer_pb2 as epb
from services.gateway.catalog import UNLISTED_REASONS

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
    60.0,
)
_HANDLER_STAGES = ("decode", "preprocess", "forward_cam", "encode")


class GatewayMetrics:
    """The gateway's metrics; ``render()`` is the /metrics body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        prefix, reg = "ptxplain_gateway_", self.registry
        self.requests = Counter(
            prefix + "requests", "Requests answered", ["api", "method", "code"], registry=reg
        )
        self.request_seconds = Histogram(
            prefix + "request_seconds",
            "Request latency",
            ["api", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.model_results = Counter(
            prefix + "model_results", "Per-model results", ["model", "code"], registry=reg
        )
        self.stage_seconds = Histogram(
            prefix + "stage_seconds",
            "Per-model time per stage",
            ["model", "stage"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.in_flight = Gauge(
            prefix + "in_flight", "Backend calls in flight", ["backend"], registry=reg
        )
        self.shed = Counter(
            prefix + "shed",
            "Calls refused past the in-flight bound",
            ["backend", "model"],
            registry=reg,
        )
        self.backend_errors = Counter(
            prefix + "backend_errors",
            "Failed backend calls",
            ["backend", "model", "code"],
            registry=reg,
        )
        self.model_ready = Gauge(
            prefix + "model_ready", "1 when the model is ready", ["model"], registry=reg
        )
        build = Info(prefix + "build", "ptxplain and what it runs with", registry=reg)
        build.info({k: v for k, v in versions().items() if k != "python"})  # python_info has it
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            reg.register(collector)
        self.backend_unlisted = Gauge(
            prefix + "backend_unlisted",
            "1 while the backend's models cannot be listed, for that reason",
            ["backend", "reason"],
            registry=reg,
        )

    def observe_request(self, api: str, method: str, code: str, seconds: float) -> None:
        self.requests.labels(api, method, code).inc()
        self.request_seconds.labels(api, method).observe(seconds)

    def observe_model(
        self, model: str, code: str, timings: epb.GatewayTimings, handler: object | None
    ) -> None:
        """One model's result: its status and stage times (``handler``: result Timings)."""
        self.model_results.labels(model, code).inc()
        stage = self.stage_seconds
        stage.labels(model, "queue").observe(timings.queue_ms / 1000.0)
        stage.labels(model, "backend").observe(timings.backend_ms / 1000.0)
        stage.labels(model, "gateway").observe(timings.gateway_ms / 1000.0)
        if handler is not None:
            for name in _HANDLER_STAGES:
                stage.labels(model, name).observe(getattr(handler, f"{name}_ms") / 1000.0)

    def observe_unlisted(self, backends: Iterable[str], unlisted: Mapping[str, str]) -> None:
        """``unlisted``: backend -> reason (UNLISTED_REASONS) for those the catalog cannot list."""
        for backend in backends:
            for reason in UNLISTED_REASONS:
                self.backend_unlisted.labels(backend, reason).set(
                    int(unlisted.get(backend) == reason)
                )

    def render(self) -> bytes:
        return generate_latest(self.registry)
