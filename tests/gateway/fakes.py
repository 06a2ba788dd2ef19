"""Fakes for the gateway's unit tests: ONE layer faked — TorchServe.

:class:`FakeTorchServe` is a real grpc.aio server speaking TorchServe's inference API
(``org.pytorch.serve.grpc.inference``) on a loopback port, answering each model the way a
:class:`FakeModel` says (delay, item error, gRPC error, token check). :class:`FakeMetadata`
stands in for the management API.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np
from PIL import Image

from ptxplain.torchserve import inference_pb2, inference_pb2_grpc
from ptxplain.v1 import result_pb2 as pb
from services.gateway.catalog import ModelDescription
from services.gateway.config import BackendConfig, GatewayConfig

__all__ = [
    "FakeMetadata",
    "FakeModel",
    "FakeTorchServe",
    "gateway_config",
    "png_bytes",
    "result_bytes",
]


def png_bytes(height: int = 40, width: int = 30, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def result_bytes(model: str, *, code: int = 0, message: str = "", side: int = 4) -> bytes:
    """A handler-like ExplainResult: 2 classes, one float16 map, geometry, timings."""
    result = pb.ExplainResult(
        model=model,
        architecture="resnet18",
        classes=["no_pneumothorax", "pneumothorax"],
        logits=[0.25, -0.5],
        probabilities=[0.679, 0.321],
        predicted_class=0,
        positive_probability=0.321,
        threshold=0.5,
        positive=False,
        trained=False,
    )
    result.status.CopyFrom(pb.Status(code=code, message=message, http_status=400 if code else 200))
    if code == 0:
        values = np.linspace(0, 1, side * side, dtype=np.float32).reshape(side, side)
        result.maps.add(
            method="gradcam",
            height=side,
            width=side,
            encoding=pb.MAP_ENCODING_FLOAT16,
            space=pb.MAP_SPACE_LAYER,
            data=values.astype("<f2").tobytes(),
            normalized=True,
            raw_min=0.0,
            raw_max=2.0,
            target_class=1,
        )
        result.geometry.CopyFrom(
            pb.Geometry(
                original_height=40,
                original_width=30,
                input_height=64,
                input_width=64,
                scale=1.6,
                pad_top=0,
                pad_left=8,
                content_height=64,
                content_width=48,
            )
        )
    result.timings.CopyFrom(
        pb.Timings(decode_ms=1, preprocess_ms=2, forward_cam_ms=3, encode_ms=4, batch_size=1)
    )
    return result.SerializeToString()


@dataclasses.dataclass
class FakeModel:
    """How the fake TorchServe answers one model."""

    delay_s: float = 0.0
    item_error: int = 0  # a handler item error code (the call itself succeeds)
    grpc_error: grpc.StatusCode | None = None
    grpc_details: str = "Prediction failed"


class _Servicer(inference_pb2_grpc.InferenceAPIsServiceServicer):
    def __init__(self, fake: FakeTorchServe) -> None:
        self.fake = fake

    async def Predictions(self, request: Any, context: Any) -> Any:
        fake = self.fake
        metadata = dict(context.invocation_metadata())
        fake.calls.append((request.model_name, dict(request.input), metadata))
        if fake.token and metadata.get("authorization") != f"Bearer {fake.token}":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "Token Authorization failed")
        model = fake.models.get(request.model_name)
        if model is None:
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"Model not found: {request.model_name}\norg.pytorch.serve.archive.model.ModelNotFoundException",
            )
        assert model is not None
        fake.in_flight += 1
        fake.peak_in_flight = max(fake.peak_in_flight, fake.in_flight)
        try:
            await asyncio.sleep(model.delay_s)
        finally:
            fake.in_flight -= 1
        if model.grpc_error is not None:
            await context.abort(model.grpc_error, model.grpc_details)
        message = "bad item" if model.item_error else ""
        return inference_pb2.PredictionResponse(
            prediction=result_bytes(request.model_name, code=model.item_error, message=message)
        )


class FakeTorchServe:
    """A TorchServe stand-in on a loopback port; ``async with`` starts and stops it."""

    def __init__(self, models: Mapping[str, FakeModel], token: str | None = None) -> None:
        self.models = dict(models)
        self.token = token
        self.calls: list[tuple[str, dict[str, bytes], dict[str, str]]] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.port = 0
        self._server: grpc.aio.Server | None = None

    async def start(self, port: int = 0) -> int:
        self._server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        inference_pb2_grpc.add_InferenceAPIsServiceServicer_to_server(_Servicer(self), self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port or self.port}")
        await self._server.start()
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
            self._server = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeTorchServe:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class FakeMetadata:
    """The management API's answers: every configured model ready, described as ResNet-18."""

    def __init__(self, ready: Mapping[str, bool] | None = None) -> None:
        self.ready = dict(ready or {})
        self.describe_calls = 0

    async def list_models(self, backend: BackendConfig) -> list[str]:
        return sorted(self.ready)

    async def describe(
        self, backend: BackendConfig, model: str, customized: bool
    ) -> ModelDescription:
        self.describe_calls += 1
        ready = self.ready.get(model, True)
        metadata = {
            "architecture": "resnet18",
            "family": "resnet",
            "input_size": 64,
            "classes": ["no_pneumothorax", "pneumothorax"],
            "positive_class": 1,
            "threshold": 0.4,
            "depth": 18,
            "params": 11177538,
            "flops": 296093696,
            "trained": False,
            "weights_source": "random-init (seed 0)",
        }
        return ModelDescription(
            ready=ready,
            version="0.1.0",
            detail="" if ready else "no READY worker",
            metadata=metadata if customized else None,
        )

    def close(self) -> None:
        pass


def gateway_config(
    backends: Mapping[str, tuple[str, tuple[str, ...]]], **overrides: Any
) -> GatewayConfig:
    """A loopback config on free ports: ``{backend name: (grpc target, models)}``."""
    values: dict[str, Any] = {"grpc_port": 0, "http_port": 0, "catalog_refresh_s": 60.0}
    values.update(overrides)
    per_backend = values.pop("backend_overrides", {})
    return GatewayConfig(
        backends=tuple(
            BackendConfig(
                name=name,
                grpc=target,
                management="http://127.0.0.1:9",
                models=models,
                **per_backend.get(name, {}),
            )
            for name, (target, models) in backends.items()
        ),
        **values,
    )
