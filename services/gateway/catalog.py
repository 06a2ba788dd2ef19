"""The gateway's catalog: which models exist, which backend serves each, what they are, and
whether they are ready.

Refreshed in the background from each backend's management API: the model list (for backends
configured with ``models: all``), worker states (ready = a READY worker), and once per model
its metadata (``GET /models/{name}?customized=true``: the handler's ``describe_handle``). Calls
themselves also update readiness: a connection failure marks a model not ready, a success ready.

A backend whose models cannot be listed is not silent: :meth:`Catalog.unlisted` names it with
the reason (:data:`UNLISTED_REASONS`: its key file missing or unreadable, its management API
refusing the token, unreachable, or answering with an error), for ListModels, ``/readyz``, the
gRPC health service and a metric; a warning is logged when that starts or its reason changes,
and again at most every :data:`WARN_EVERY_S` seconds while it lasts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ptxplain.errors import AuthError, BackendError, PtxplainError, UnknownModelError, quoted
from ptxplain.v1 import explainer_pb2 as epb
from services.gateway.backend import Backend
from services.gateway.config import BackendConfig

__all__ = [
    "UNLISTED_REASONS",
    "Catalog",
    "MetadataSource",
    "ModelDescription",
    "ModelInfo",
    "TorchServeMetadata",
    "UnlistedBackend",
    "unlisted_reason",
]

log = logging.getLogger(__name__)

KEY_FILE_MISSING = "key_file_missing"
KEY_FILE_UNREADABLE = "key_file_unreadable"
TOKEN_REFUSED = "token_refused"
UNREACHABLE = "unreachable"
MANAGEMENT_ERROR = "management_error"
UNLISTED_REASONS = (
    KEY_FILE_MISSING,
    KEY_FILE_UNREADABLE,
    TOKEN_REFUSED,
    UNREACHABLE,
    MANAGEMENT_ERROR,
)
# While a backend stays unlisted for the same reason, its warning repeats at most this often.
WARN_EVERY_S = 60.0


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
    data_fingerprint: str = ""
    cam_grid: tuple[int, ...] = ()
    training_digests: int = 0

    def to_proto(self) -> epb.ModelInfo:
        values = dataclasses.asdict(self)
        values["classes"], values["methods"] = list(self.classes), list(self.methods)
        values["cam_grid"] = list(self.cam_grid)
        return epb.ModelInfo(**values)

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["classes"], values["methods"] = list(self.classes), list(self.methods)
        values["cam_grid"] = list(self.cam_grid)
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
            trained_on=str(
                meta.get("trained_on") or meta.get("extra", {}).get("trained_on", self.trained_on)
            ),
            data_fingerprint=str(meta.get("data_fingerprint", self.data_fingerprint)),
            cam_grid=tuple(int(g) for g in meta.get("cam_grid") or self.cam_grid),
            training_digests=int(meta.get("training_digests", self.training_digests)),
        )


@dataclasses.dataclass(frozen=True)
class ModelDescription:
    """What a backend says about one model."""

    ready: bool
    version: str = ""
    detail: str = ""
    metadata: Mapping[str, Any] | None = None
    # Calls worth handing over at once (0 = unknown): one per READY worker on CPU, where a batch
    # costs as much as its items; batch size x READY workers on a GPU, where it costs about one.
    capacity: int = 0


@dataclasses.dataclass(frozen=True)
class UnlistedBackend:
    """A backend whose models could not be listed, and why (mirrors ``ptxplain.v1``'s)."""

    backend: str
    reason: str
    detail: str

    def to_proto(self) -> epb.UnlistedBackend:
        return epb.UnlistedBackend(**dataclasses.asdict(self))

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def _key_file_fault(key_file: Path) -> str | None:
    """Why ``key_file`` cannot be used (missing / unreadable), or None when it reads."""
    from services.torchserve.auth import read_key_file

    try:
        read_key_file(key_file)
    except AuthError as exc:
        return (
            KEY_FILE_MISSING
            if isinstance(exc.__cause__, FileNotFoundError)
            else KEY_FILE_UNREADABLE
        )
    return None


def unlisted_reason(exc: PtxplainError, key_file: Path | None) -> str:
    """One of :data:`UNLISTED_REASONS` for the error a model listing raised."""
    if isinstance(exc, AuthError):
        fault = _key_file_fault(key_file) if key_file is not None else None
        return fault or TOKEN_REFUSED
    if isinstance(exc, BackendError) and exc.__cause__ is not None:
        return UNREACHABLE  # no connection, or no answer in time
    return MANAGEMENT_ERROR


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
            capacity=_capacity(raw, states.count("READY")),
        )

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def _capacity(raw: Mapping[str, Any], ready_workers: int) -> int:
    """Calls worth handing to TorchServe at once: one full batch per ready worker, so that its
    batching can fill (fewer, and every batch would hold one image)."""
    return ready_workers * int(raw.get("batchSize", 1) or 1)


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
        self._unlisted: dict[str, UnlistedBackend] = {}
        self._warned: dict[str, tuple[str, float]] = {}
        self.refreshed_at = 0.0

    # -- reading -------------------------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        return [self._models[name] for name in sorted(self._models)]

    def get(self, model: str) -> ModelInfo:
        try:
            return self._models[model]
        except KeyError:
            known = ", ".join(sorted(self._models)) or "none"
            raise UnknownModelError(
                f"unknown model {quoted(model)}; served models: {known}"
            ) from None

    def backend_for(self, model: str) -> Backend:
        return self.backends[self.get(model).backend]

    def unlisted(self) -> list[UnlistedBackend]:
        """The backends whose models the last refresh could not list, by name."""
        return [self._unlisted[name] for name in sorted(self._unlisted)]

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

    def observe_backend(self, backend: str, ready: bool, detail: str = "") -> None:
        """Readiness of every model of one backend, learnt from a call that could not connect."""
        for info in self.models():
            if info.backend == backend:
                self.observe(info.name, ready, detail)

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
            self._mark_unlisted(backend, exc)
            return []
        self._mark_listed(backend.name)
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
        backend.set_capacity(name, described.capacity)
        self._models[name] = info

    def _mark_unlisted(self, backend: Backend, exc: PtxplainError) -> None:
        reason = unlisted_reason(exc, backend.config.key_file)
        self._unlisted[backend.name] = UnlistedBackend(backend.name, reason, str(exc))
        for info in self.models():
            if info.backend == backend.name:
                self.observe(info.name, False, f"backend cannot be listed ({reason}): {exc}")
        last = self._warned.get(backend.name)
        now = time.monotonic()
        if last is None or last[0] != reason or now - last[1] >= WARN_EVERY_S:
            self._warned[backend.name] = (reason, now)
            log.warning("cannot list the models of backend %s (%s): %s", backend.name, reason, exc)

    def _mark_listed(self, name: str) -> None:
        if self._unlisted.pop(name, None) is not None:
            log.info("backend %s lists its models again", name)
        self._warned.pop(name, None)
