"""The gateway's catalog: which models exist, which backend serves each, what they are, and
whether they are ready.

Refreshed in the background from each backend's management API: the model list (for backends
configured with ``models: all``), worker states (ready = a READY worker), and once per model
its metadata (``GET /models/{name}?customized=true``: the handler's ``describe_handle``). Calls
themselves also update readiness: a connection failure marks a model not ready, a success ready.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from ptxplain.errors import PtxplainError, UnknownModelError
from ptxplain.v1 import explainer_pb2 as epb
from services.gateway.backend import Backend
from services.gateway.config import BackendConfig

__all__ = [
    "Catalog",
    "MetadataSource",
    "ModelDescription",
    "ModelInfo",
    "TorchServeMetadata",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """One routable model (mirrors ``ptxplain.v1.ModelInfo``)."""

    name: str
    backend: str
    architecture: str = ""
    family: str = ""
    version: str = ""
    input_size: int = 0
    classes: tuple[str, ...] = ()
    positive_class: int = 1
    threshold: float = 0.5
    depth: int = 0
    parameters: int = 0
    flops: int = 0
    trained: bool = False
    weights_source: str = ""
    ready: bool = False
    detail: str = "not checked yet"
    methods: tuple[str, ...] = ()
    trained_on: str = ""

    def to_proto(self) -> epb.ModelInfo:
        values = dataclasses.asdict(self)
        values["classes"], values["methods"] = list(self.classes), list(self.methods)
        return epb.ModelInfo(**values)

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["classes"], values["methods"] = list(self.classes), list(self.methods)
        return values

    def with_metadata(self, meta: Mapping[str, Any]) -> ModelInfo:
        """Fields from the handler's description (``ModelMeta`` + family/depth/params/flops)."""
        return dataclasses.replace(
            self,
            architecture=str(meta.get("architecture", self.architecture)),
            family=str(meta.get("family", self.family)),
            input_size=int(meta.get("input_size", self.input_size)),
            classes=tuple(str(c) for c in meta.get("classes", self.classes)),
            positive_class=int(meta.get("positive_class", self.positive_class)),
            threshold=float(meta.get("threshold", self.threshold)),
            depth=int(meta.get("depth", self.depth)),
            parameters=int(meta.get("params", self.parameters)),
            flops=int(meta.get("flops", self.flops)),
            trained=bool(meta.get("trained", self.trained)),
            weights_source=str(meta.get("weights_source", self.weights_source)),
            methods=tuple(str(m) for m in meta.get("methods", self.methods)),
            trained_on=str(meta.get("extra", {}).get("trained_on", self.trained_on)),
        )


@dataclasses.dataclass(frozen=True)
class ModelDescription:
    """What a backend says about one model."""

    ready: bool
    version: str = ""
    detail: str = ""
    metadata: Mapping[str, Any] | None = None


class MetadataSource(Protocol):
    """Where the catalog learns about models (TorchServe's management API; fakes in tests)."""

    async def list_models(self, backend: BackendConfig) -> list[str]: ...

    async def describe(
        self, backend: BackendConfig, model: str, customized: bool
    ) -> ModelDescription: ...

    def close(self) -> None: ...


class TorchServeMetadata:
    """The management API of each backend (blocking REST calls, run in a thread)."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self._clients: dict[str, Any] = {}

    def _client(self, backend: BackendConfig) -> Any:
        from services.torchserve.auth import TokenSource
        from services.torchserve.client import RestClient

        if backend.name not in self._clients:
            tokens = None
            if backend.key_file is not None:
                tokens = TokenSource(backend.key_file, backend.management, "management")
            self._clients[backend.name] = RestClient(
                backend.management, tokens, timeout_s=self.timeout_s, pool_size=16
            )
        return self._clients[backend.name]

    def _get_json(self, backend: BackendConfig, path: str) -> Any:
        from ptxplain.errors import BackendError

        answer = self._client(backend).request("GET", path, timeout=self.timeout_s)
        if answer.status_code == 404:
            raise UnknownModelError(f"backend {backend.name!r} has no model at {path}")
        if answer.status_code != 200:
            raise BackendError(
                f"backend {backend.name!r}: management {path} answered {answer.status_code}"
            )
        return answer.json()

    async def list_models(self, backend: BackendConfig) -> list[str]:
        raw = await asyncio.to_thread(self._get_json, backend, "/models")
        return sorted(str(m["modelName"]) for m in raw.get("models", []))

    async def describe(
        self, backend: BackendConfig, model: str, customized: bool
    ) -> ModelDescription:
        path = f"/models/{model}" + ("?customized=true" if customized else "")
        raw = (await asyncio.to_thread(self._get_json, backend, path))[0]
        states = [str(w.get("status", "")) for w in raw.get("workers", [])]
        ready = "READY" in states
        metadata = raw.get("customizedMetadata")
        if isinstance(metadata, str):  # older TorchServes send the handler's JSON as text
            metadata = json.loads(metadata) if metadata.strip() else None
        return ModelDescription(
            ready=ready,
            version=str(raw.get("modelVersion", "")),
            detail="" if ready else f"no READY worker (workers: {states or 'none'})",
            metadata=metadata if isinstance(metadata, Mapping) else None,
        )

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


class Catalog:
    """Model name -> backend and :class:`ModelInfo`; refreshed by :meth:`refresh`."""

    def __init__(self, backends: Iterable[Backend], source: MetadataSource) -> None:
        self.backends = {backend.name: backend for backend in backends}
        self.source = source
        self._models: dict[str, ModelInfo] = {}
        for backend in self.backends.values():
            if not backend.config.discovers:
                for name in backend.config.models:
                    self._models[name] = ModelInfo(name=name, backend=backend.name)
        self._described: set[str] = set()
        self.refreshed_at = 0.0

    # -- reading -------------------------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        return [self._models[name] for name in sorted(self._models)]

    def get(self, model: str) -> ModelInfo:
        try:
            return self._models[model]
        except KeyError:
            known = ", ".join(sorted(self._models)) or "none"
            raise UnknownModelError(f"unknown model {model!r}; served models: {known}") from None

    def backend_for(self, model: str) -> Backend:
        return self.backends[self.get(model).backend]

    def ready_models(self) -> list[str]:
        return [info.name for info in self.models() if info.ready]

    def resolve(self, requested: Sequence[str]) -> list[str]:
        """The models a request asks for (duplicates dropped); none = every ready model."""
        if not requested:
            return self.ready_models()
        names = list(dict.fromkeys(requested))
        for name in names:
            self.get(name)
        return names

    # -- updating ------------------------------------------------------------------------------

    def observe(self, model: str, ready: bool, detail: str = "") -> None:
        """Readiness learnt from a call (a success, or a connection failure)."""
        info = self._models.get(model)
        if info is not None and (info.ready, info.detail) != (ready, detail):
            self._models[model] = dataclasses.replace(info, ready=ready, detail=detail)

    async def refresh(self) -> None:
        """Ask every backend (concurrently) for its models and their state."""
        await asyncio.gather(*(self._refresh_backend(b) for b in self.backends.values()))
        self.refreshed_at = time.monotonic()

    async def _refresh_backend(self, backend: Backend) -> None:
        names = await self._backend_models(backend)
        await asyncio.gather(*(self._refresh_model(backend, name) for name in names))

    async def _backend_models(self, backend: Backend) -> list[str]:
        if not backend.config.discovers:
            return list(backend.config.models)
        try:
            names = await self.source.list_models(backend.config)
        except PtxplainError as exc:
            for info in self.models():
                if info.backend == backend.name:
                    self.observe(info.name, False, f"backend unreachable: {exc}")
            return []
        mine = []
        for name in names:
            owner = self._models.setdefault(name, ModelInfo(name=name, backend=backend.name))
            if owner.backend == backend.name:
                mine.append(name)
            else:
                log.warning(
                    "model %s is served by %s and %s; routing to %s",
                    name,
                    owner.backend,
                    backend.name,
                    owner.backend,
                )
        return mine

    async def _refresh_model(self, backend: Backend, name: str) -> None:
        customized = name not in self._described
        try:
            described = await self.source.describe(backend.config, name, customized)
        except PtxplainError as exc:
            self.observe(name, False, str(exc))
            return
        info = dataclasses.replace(
            self._models[name],
            ready=described.ready,
            version=described.version,
            detail=described.detail,
        )
        if described.metadata is not None:
            info = info.with_metadata(described.metadata)
        if customized and described.ready:
            self._described.add(name)
        self._models[name] = info
