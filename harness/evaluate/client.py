"""The evaluation's clients of the gateway: gRPC (``ExplainStream``, so each model's arrival
time is measured on the client) and the HTTP/JSON twin (``POST /v1/explain``). Both turn the
gateway's answer into :class:`~harness.evaluate.replay.FanOutAnswer` with maps decoded at their native
resolution; the harness lays them onto mask coordinates itself.

A request the gateway refuses as a whole for the image's sake (INVALID_ARGUMENT: not an image,
too large) is stored as that error for every model and not retried; UNAVAILABLE, deadlines and
shedding raise :class:`~ptxplain.errors.BackendError` / :class:`OverloadedError` (retried by a
later run); a wrong token raises :class:`AuthError` and stops the run.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.evaluate.replay import FanOutAnswer
from harness.metrics.depth import ModelFacts, facts_from_registry
from harness.store import ModelAnswer
from ptxplain.errors import (
    AuthError,
    BackendError,
    Code,
    OverloadedError,
    error_for_code,
)

__all__ = ["GrpcGatewayClient", "HttpGatewayClient", "answer_from_proto"]


def _raise_or_answer(code: Code, message: str, models: Sequence[str], target: str) -> FanOutAnswer:
    """A whole-request failure: transient ones raise; the image's own fault is an answer."""
    text = f"gateway {target}: {code.name}: {message}"
    if code != Code.INVALID_ARGUMENT:
        error = error_for_code(code, text)
        raise (
            error
            if isinstance(error, BackendError | OverloadedError | AuthError)
            else (BackendError(text))
        )
    return FanOutAnswer({m: ModelAnswer(m, code=int(code), message=message) for m in models}, 0.0)


def _facts(
    name: str,
    architecture: str,
    family: str,
    depth: int,
    params: int,
    flops: int,
    trained: bool,
    threshold: float,
    provenance: dict[str, Any] | None = None,
) -> ModelFacts:
    if params and flops and depth:
        return ModelFacts(
            name, architecture, family, depth, params, flops, trained, threshold, provenance
        )
    registry = facts_from_registry(name, architecture, trained=trained)
    return ModelFacts(
        name,
        architecture,
        registry.family,
        registry.depth,
        registry.params,
        registry.flops,
        trained,
        threshold,
        provenance,
    )


PROVENANCE_FIELDS = (
    "weights_source",
    "trained_on",
    "data_fingerprint",
    "cam_grid",
    "input_size",
    "training_digests",
)


def _provenance(read: Any) -> dict[str, Any] | None:
    """What the model list says of the weights, for the fields this gateway serves."""
    found = {}
    for key in PROVENANCE_FIELDS:
        value = read(key)
        if value:  # unset proto fields read as "", 0 or an empty list
            found[key] = list(value) if key == "cam_grid" else value
    return found or None


def answer_from_proto(item: Any, client_ms: float) -> ModelAnswer:
    """One ``ptxplain.v1.ModelResult`` as a :class:`ModelAnswer` (map decoded, native size)."""
    from ptxplain.explain.result_codec import decode_map

    gateway = {
        "gateway_queue_ms": item.gateway_timings.queue_ms,
        "gateway_backend_ms": item.gateway_timings.backend_ms,
        "gateway_own_ms": item.gateway_timings.gateway_ms,
        "gateway_attempts": float(item.gateway_timings.attempts),
    }
    base = {
        "model": item.model,
        "architecture": item.architecture,
        "trained": item.trained,
        "backend_ms": item.gateway_timings.backend_ms,
        "client_ms": client_ms,
    }
    status = item.status
    if status.code != 0 or not item.HasField("result"):
        return ModelAnswer(
            **base,
            code=status.code or int(Code.UNKNOWN),
            message=status.message or "no result",
            timings=gateway,
        )
    result = item.result
    if result.status.code != 0:
        return ModelAnswer(
            **base, code=result.status.code, message=result.status.message, timings=gateway
        )
    t = result.timings
    timings = {
        "decode_ms": t.decode_ms,
        "preprocess_ms": t.preprocess_ms,
        "core_wait_ms": t.core_wait_ms,
        "forward_cam_ms": t.forward_cam_ms,
        "encode_ms": t.encode_ms,
        "batch_size": float(t.batch_size),
        **gateway,
    }
    maps = [m for m in result.maps if m.method == "gradcam"] or list(result.maps)
    heatmap = decode_map(maps[0]) if maps else None
    info = (
        {}
        if not maps
        else {
            "method": maps[0].method,
            "height": maps[0].height,
            "width": maps[0].width,
            "normalized": maps[0].normalized,
            "raw_min": maps[0].raw_min,
            "raw_max": maps[0].raw_max,
        }
    )
    geometry = {f.name: getattr(result.geometry, f.name) for f in result.geometry.DESCRIPTOR.fields}
    return ModelAnswer(
        **base,
        positive_probability=result.positive_probability,
        threshold=result.threshold,
        positive=result.positive,
        logits=tuple(result.logits),
        timings=timings,
        geometry=geometry if result.HasField("geometry") else None,
        map_info=info,
        heatmap=heatmap,
        seen_in_training=result.seen_in_training,
    )


class GrpcGatewayClient:
    """Streams each image's fan-out; one channel shared by the replay's threads."""

    def __init__(
        self,
        target: str,
        models: Sequence[str] = (),
        *,
        token: str | None = None,
        timeout_s: float = 120.0,
        root_certificates: bytes | None = None,
        tls: bool = False,
    ) -> None:
        from services.gateway.client import ExplainerClient

        self.target, self.models, self.timeout_s = target, tuple(models), timeout_s
        self._client = ExplainerClient(
            target, token=token, root_certificates=root_certificates, tls=tls
        )

    def _options(self) -> Any:
        from ptxplain.v1 import explainer_pb2 as epb

        return epb.ExplainOptions(methods=["gradcam"], map_size="native")

    def list_models(self) -> list[ModelFacts]:
        import grpc

        try:
            infos = self._client.list_models()
        except grpc.RpcError as exc:
            raise BackendError(
                f"gateway {self.target}: ListModels failed: {exc.code().name}: {exc.details()}"
            ) from exc
        return [
            _facts(
                i.name,
                i.architecture,
                i.family,
                i.depth,
                i.parameters,
                i.flops,
                i.trained,
                i.threshold,
                _provenance(lambda key, i=i: getattr(i, key, None)),
            )
            for i in infos
        ]

    def explain(self, image_id: str, image: bytes) -> FanOutAnswer:
        import grpc

        started = time.perf_counter()
        answers = {}
        try:
            for item in self._client.stream(
                image, self.models, self._options(), timeout_s=self.timeout_s
            ):
                answers[item.model] = answer_from_proto(item, (time.perf_counter() - started) * 1e3)
        except grpc.RpcError as exc:
            if answers:  # a stream cut after some models: keep them; the rest are marked absent
                return FanOutAnswer(answers, (time.perf_counter() - started) * 1e3)
            return _raise_or_answer(
                Code[exc.code().name], str(exc.details()), self.models, self.target
            )
        return FanOutAnswer(answers, (time.perf_counter() - started) * 1e3)

    def close(self) -> None:
        self._client.close()


def _http_answer(body: dict[str, Any], client_ms: float) -> ModelAnswer:
    gateway_t = body.get("gateway_timings", {})
    gateway = {
        f"gateway_{k.removesuffix('_ms')}_ms" if k != "gateway_ms" else "gateway_own_ms": float(v)
        for k, v in gateway_t.items()
        if k.endswith("_ms")
    }
    base = {
        "model": body["model"],
        "architecture": body.get("architecture", ""),
        "trained": bool(body.get("trained")),
        "client_ms": client_ms,
        "backend_ms": gateway_t.get("backend_ms"),
    }
    status, result = body["status"], body.get("result")
    if status["code"] != "OK" or result is None:
        return ModelAnswer(
            **base,
            code=int(Code[status["code"]])
            if status["code"] in Code.__members__
            else int(Code.UNKNOWN),
            message=status.get("message", ""),
            timings=gateway,
        )
    maps = [m for m in result["maps"] if m["method"] == "gradcam"] or result["maps"]
    heatmap = None
    if maps:
        raw = base64.b64decode(maps[0]["data"])
        heatmap = np.frombuffer(raw, dtype="<f2").reshape(maps[0]["shape"]).astype(np.float32)
    timings = {k: float(v) for k, v in result["timings"].items()} | gateway
    return ModelAnswer(
        **base,
        positive_probability=result["positive_probability"],
        threshold=result["threshold"],
        positive=bool(result["positive"]),
        logits=tuple(result["logits"]),
        timings=timings,
        geometry=_http_geometry(result.get("geometry")),
        map_info=_http_map_info(maps[0]) if maps else {},
        heatmap=heatmap,
        seen_in_training=bool(result.get("seen_in_training")),
    )


def _http_geometry(values: dict[str, Any] | None) -> dict[str, Any] | None:
    """JSON numbers back to the Geometry field types (every field an int except ``scale``)."""
    if values is None:
        return None
    return {k: float(v) if k == "scale" else int(v) for k, v in values.items()}


def _http_map_info(item: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {
        k: item[k] for k in ("method", "normalized", "raw_min", "raw_max") if k in item
    }
    return {**info, "height": item["shape"][0], "width": item["shape"][1]}


class HttpGatewayClient:
    """The HTTP/JSON twin: one POST per image (per-model client time = the whole response's)."""

    def __init__(
        self,
        base_url: str,
        models: Sequence[str] = (),
        *,
        token: str | None = None,
        timeout_s: float = 120.0,
        ca_file: Path | None = None,
    ) -> None:
        import requests

        self.base_url, self.models, self.timeout_s = base_url.rstrip("/"), tuple(models), timeout_s
        self._session = requests.Session()
        if ca_file is not None:
            self._session.verify = str(ca_file)
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        try:
            response = self._session.request(
                method, self.base_url + path, timeout=self.timeout_s, **kwargs
            )
        except requests.RequestException as exc:
            raise BackendError(f"gateway {self.base_url}: {exc}") from exc
        return response

    def list_models(self) -> list[ModelFacts]:
        response = self._call("GET", "/v1/models")
        if response.status_code != 200:
            raise BackendError(
                f"gateway {self.base_url}: GET /v1/models answered {response.status_code}"
            )
        return [
            _facts(
                m["name"],
                m["architecture"],
                m["family"],
                m["depth"],
                m["parameters"],
                m["flops"],
                m["trained"],
                m["threshold"],
                _provenance(m.get),
            )
            for m in response.json()["models"]
        ]

    def explain(self, image_id: str, image: bytes) -> FanOutAnswer:
        started = time.perf_counter()
        params = {"models": ",".join(self.models), "map_encoding": "float16", "methods": "gradcam"}
        response = self._call(
            "POST",
            "/v1/explain",
            params=params,
            data=image,
            headers={"Content-Type": "application/octet-stream"},
        )
        client_ms = (time.perf_counter() - started) * 1e3
        if response.status_code != 200:
            error = _error_of(response)
            return _raise_or_answer(error[0], error[1], self.models, self.base_url)
        answers = {b["model"]: _http_answer(b, client_ms) for b in response.json()["results"]}
        return FanOutAnswer(answers, client_ms)

    def close(self) -> None:
        self._session.close()


def _error_of(response: Any) -> tuple[Code, str]:
    try:
        error = response.json()["error"]
        return Code[error["code"]], str(error["message"])
    except (ValueError, KeyError, TypeError):
        return Code.UNAVAILABLE, f"HTTP {response.status_code}: {response.text[:200]}"
