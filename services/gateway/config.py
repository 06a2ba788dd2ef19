"""The gateway's typed configuration: built once in ``main()`` from a YAML file / environment,
validated, and passed down. Nothing reads the environment per request.

A YAML file (``--config`` or ``$PTXPLAIN_GATEWAY_CONFIG``; or the YAML text itself in
``$PTXPLAIN_GATEWAY_CONFIG_YAML``, for pods)::

    host: 127.0.0.1            # gRPC and HTTP bind address
    grpc_port: 50051           # 0 = pick a free port
    http_port: 8000            # null = no HTTP/JSON twin
    max_image_bytes: 33554432  # the edge's cap (32 MiB)
    default_timeout_s: 60      # per-model deadline when the client sets none
    model_timeouts_s: {vit_s16: 10}
    client_token_file: secrets/gateway-token   # or $PTXPLAIN_GATEWAY_TOKEN; off when absent
    tls: {cert: tls/server.crt, key: tls/server.key}
    backends:                  # model -> endpoint map: one TorchServe, several, or pods
      - name: local
        grpc: 127.0.0.1:7070
        management: http://127.0.0.1:8081
        key_file: run/torchserve/key_file.json   # TorchServe's token file; absent = auth off
        models: all            # or a list; `all` = what the management API lists
        max_in_flight: 32

Relative paths are resolved against the YAML file's folder.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ptxplain.errors import ConfigError
from services.torchserve.config import (
    DEFAULT_MAX_REQUEST_SIZE,
    DEFAULT_MAX_RESPONSE_SIZE,
    GATEWAY_IMAGE_CAP,
)

__all__ = [
    "CONFIG_ENV",
    "CONFIG_YAML_ENV",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "ENVELOPE_BYTES",
    "TOKEN_ENV",
    "BackendConfig",
    "GatewayConfig",
    "TlsConfig",
    "config_from_mapping",
    "is_loopback",
    "load_config",
]

CONFIG_ENV = "PTXPLAIN_GATEWAY_CONFIG"
CONFIG_YAML_ENV = "PTXPLAIN_GATEWAY_CONFIG_YAML"
TOKEN_ENV = "PTXPLAIN_GATEWAY_TOKEN"
# Room for the protobuf framing and option fields around the image in one request.
ENVELOPE_BYTES = 1024 * 1024
# Largest response to a client: every model's result together.
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclasses.dataclass(frozen=True)
class BackendConfig:
    """One TorchServe (or a pod): where its gRPC inference and management APIs listen."""

    name: str
    grpc: str
    management: str
    models: tuple[str, ...] = ("all",)
    key_file: Path | None = None
    max_in_flight: int = 32
    connect_retries: int = 2
    # What that TorchServe accepts / answers (its max_request_size / max_response_size).
    max_request_bytes: int = DEFAULT_MAX_REQUEST_SIZE
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_SIZE

    def __post_init__(self) -> None:
        where = f"backend {self.name!r}"
        if not _NAME.match(self.name):
            raise ConfigError(f"{where}: name must match {_NAME.pattern}")
        if ":" not in self.grpc:
            raise ConfigError(f"{where}: grpc must be host:port, got {self.grpc!r}")
        if not self.management.startswith(("http://", "https://")):
            raise ConfigError(
                f"{where}: management must be an http(s) URL, got {self.management!r}"
            )
        if not self.models:
            raise ConfigError(f"{where}: models must be 'all' or a list of model names")
        for model in self.models:
            if not _NAME.match(model):
                raise ConfigError(f"{where}: model name {model!r} must match {_NAME.pattern}")
        if self.max_in_flight < 1 or self.connect_retries < 0:
            raise ConfigError(f"{where}: max_in_flight >= 1 and connect_retries >= 0 required")

    @property
    def discovers(self) -> bool:
        """Whether the model list comes from the backend's management API."""
        return self.models == ("all",)


@dataclasses.dataclass(frozen=True)
class TlsConfig:
    cert: Path
    key: Path

    def __post_init__(self) -> None:
        for name in ("cert", "key"):
            if not getattr(self, name).is_file():
                raise ConfigError(f"tls.{name} {getattr(self, name)} is not a file")


@dataclasses.dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway needs; build once, validate, pass down."""

    backends: tuple[BackendConfig, ...]
    host: str = "127.0.0.1"
    grpc_port: int = 50051
    http_port: int | None = 8000
    max_image_bytes: int = GATEWAY_IMAGE_CAP
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    default_timeout_s: float = 60.0
    model_timeouts_s: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # Kept from the client's deadline for the gateway to assemble and send its answer.
    deadline_reserve_ms: float = 20.0
    catalog_refresh_s: float = 5.0
    grace_s: float = 10.0
    client_token: str | None = dataclasses.field(default=None, repr=False)
    tls: TlsConfig | None = None
    allow_remote_without_token: bool = False
    json_logs: bool = True

    def __post_init__(self) -> None:
        self._check_limits()
        self._check_backends()
        self._check_exposure()

    def _check_limits(self) -> None:
        for name in ("grpc_port", "http_port"):
            port = getattr(self, name)
            if port is not None and not 0 <= port <= 65535:
                raise ConfigError(f"{name}={port} is outside 0..65535")
        if self.max_image_bytes < 1 or self.max_response_bytes < 1:
            raise ConfigError("max_image_bytes and max_response_bytes must be positive")
        if self.default_timeout_s <= 0 or self.catalog_refresh_s <= 0 or self.grace_s < 0:
            raise ConfigError("default_timeout_s and catalog_refresh_s > 0, grace_s >= 0")
        for model, seconds in self.model_timeouts_s.items():
            if seconds <= 0:
                raise ConfigError(f"model_timeouts_s.{model}={seconds} must be positive")

    def _check_backends(self) -> None:
        if not self.backends:
            raise ConfigError("the gateway needs at least one backend")
        names = [b.name for b in self.backends]
        if len(names) != len(set(names)):
            raise ConfigError(f"backend names must differ: {names}")
        listed = [m for b in self.backends if not b.discovers for m in b.models]
        twice = sorted({m for m in listed if listed.count(m) > 1})
        if twice:
            raise ConfigError(f"model(s) {', '.join(twice)} listed for more than one backend")
        for backend in self.backends:
            needed = self.max_image_bytes + ENVELOPE_BYTES
            if backend.max_request_bytes < needed:
                raise ConfigError(
                    f"backend {backend.name!r} accepts {backend.max_request_bytes} bytes per "
                    f"request, less than the image cap {self.max_image_bytes} + "
                    f"{ENVELOPE_BYTES} bytes of envelope: raise its max_request_bytes "
                    "(TorchServe's max_request_size) or lower max_image_bytes"
                )

    def _check_exposure(self) -> None:
        if is_loopback(self.host) or self.client_token or self.allow_remote_without_token:
            return
        raise ConfigError(
            f"host {self.host!r} is not a loopback address and no client token is set: set "
            f"client_token_file or ${TOKEN_ENV}, or allow_remote_without_token: true"
        )

    @property
    def max_request_bytes(self) -> int:
        """What the gateway's gRPC server accepts: the image cap plus the envelope, so an image
        just over the cap still arrives and is refused by the edge, naming the cap."""
        return self.max_image_bytes + ENVELOPE_BYTES

    def timeout_for(self, model: str) -> float:
        return self.model_timeouts_s.get(model, self.default_timeout_s)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- loading ----------------------------------------------------------------------------------

_BACKEND_KEYS = {f.name for f in dataclasses.fields(BackendConfig)}
_TOP_KEYS = {f.name for f in dataclasses.fields(GatewayConfig)} - {"client_token"} | {
    "client_token_file"
}


def _check_keys(raw: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {sorted(known)}")


def _path(value: object, base: Path) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path


def _backend(raw: object, index: int, base: Path, source: str) -> BackendConfig:
    where = f"{source}: backends[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping")
    _check_keys(raw, _BACKEND_KEYS, where)
    values = dict(raw)
    models = values.get("models", "all")
    values["models"] = (models,) if isinstance(models, str) else tuple(str(m) for m in models)
    if values.get("key_file") is not None:
        values["key_file"] = _path(values["key_file"], base)
    try:
        return BackendConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _client_token(values: dict[str, Any], env: Mapping[str, str], base: Path) -> str | None:
    token_file = values.pop("client_token_file", None)
    if token_file is not None:
        path = _path(token_file, base)
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read client_token_file {path}: {exc}") from exc
        if not token:
            raise ConfigError(f"client_token_file {path} is empty")
        return token
    return env.get(TOKEN_ENV) or None


def config_from_mapping(
    raw: Mapping[str, Any], *, base: Path, source: str, env: Mapping[str, str]
) -> GatewayConfig:
    """A validated config from parsed YAML; ``source`` names the file in error messages."""
    _check_keys(raw, _TOP_KEYS, source)
    values = dict(raw)
    backends = values.pop("backends", None)
    if not isinstance(backends, list) or not backends:
        raise ConfigError(f"{source}: 'backends' must be a non-empty list")
    values["backends"] = tuple(_backend(b, i, base, source) for i, b in enumerate(backends))
    values["client_token"] = _client_token(values, env, base)
    if values.get("tls") is not None:
        tls = values["tls"]
        if not isinstance(tls, Mapping) or set(tls) != {"cert", "key"}:
            raise ConfigError(f"{source}: tls must be a mapping with cert and key")
        values["tls"] = TlsConfig(cert=_path(tls["cert"], base), key=_path(tls["key"], base))
    values["model_timeouts_s"] = dict(values.get("model_timeouts_s") or {})
    try:
        return GatewayConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """The config from ``path``, else ``$PTXPLAIN_GATEWAY_CONFIG``, else the YAML text in
    ``$PTXPLAIN_GATEWAY_CONFIG_YAML``."""
    env = os.environ if env is None else env
    if path is None and env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    if path is not None:
        try:
            text, base, source = path.read_text(), path.parent.absolute(), str(path)
        except OSError as exc:
            raise ConfigError(f"cannot read gateway config {path}: {exc}") from exc
    elif env.get(CONFIG_YAML_ENV):
        text, base, source = env[CONFIG_YAML_ENV], Path.cwd(), f"${CONFIG_YAML_ENV}"
    else:
        raise ConfigError(f"no gateway config: pass --config or set ${CONFIG_ENV}")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source} must hold a YAML mapping")
    return config_from_mapping(raw, base=base, source=source, env=env)
