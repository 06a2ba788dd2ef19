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
    allowed_hosts: [localhost, 127.0.0.1, "::1"]  # HTTP Host names served; default: the
                               # loopback names when bound to loopback, else any ("*")
    allowed_origins: []        # other origins that may POST (same origin always may)
    http_limits: {header_timeout_s: 10, body_timeout_s: 30, keep_alive_s: 5, max_connections: 256}
    backends:                  # model -> endpoint map: one TorchServe, several, or pods
      - name: local
        grpc: 127.0.0.1:7070
        management: http://127.0.0.1:8081
        key_file: run/torchserve/key_file.json   # TorchServe's token file; absent = auth off
        models: all            # or a list; `all` = what the management API lists
        max_in_flight: 32      # calls admitted at once (past it: RESOURCE_EXHAUSTED / 429)
        max_sent_per_model: null   # handed to TorchServe at once; null = one batch per
                                   # worker (batch size x workers)
        linger_s: 120          # a call whose client left holds its slot until TorchServe
                               # answers, at most this long

Relative paths are resolved against the YAML file's folder. The schema is the pydantic models
below (unknown keys refused); every failure is a :class:`~ptxplain.errors.ConfigError` naming
the key, located as in the YAML (``backends[0].grpc``).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Self

import pydantic
import yaml
from pydantic import Field, StringConstraints

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
    "LOOPBACK_NAMES",
    "TOKEN_ENV",
    "BackendConfig",
    "GatewayConfig",
    "HttpLimits",
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

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
Port = Annotated[int, Field(ge=0, le=65535)]
Positive = Annotated[float, Field(gt=0)]
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _describe(exc: pydantic.ValidationError, where: str) -> str:
    """pydantic's errors as one line each, located like the YAML (``backends[0].grpc``)."""
    lines = []
    errors = exc.errors()
    # A list whose only items failed is also "too short": say only why the items failed.
    if len(errors) > 1:
        errors = [e for e in errors if e["type"] != "too_short"]
    for error in errors:
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{where}: {loc.lstrip('.')}: {message}" if loc else f"{where}: {message}")
    return "; ".join(lines)


class _Config(pydantic.BaseModel):
    """Frozen, unknown keys refused; :meth:`parse` turns a failed validation into a
    :class:`ConfigError` naming each key (direct construction raises pydantic's own error)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str) -> Self:
        try:
            return cls.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise ConfigError(_describe(exc, where)) from exc

    def replaced(self, **changes: Any) -> Self:
        """A copy with ``changes``, validated again."""
        return self.parse({**dict(self), **changes}, type(self).__name__)


class BackendConfig(_Config):
    """One TorchServe (or a pod): where its gRPC inference and management APIs listen."""

    name: Name
    grpc: Annotated[str, StringConstraints(pattern=r"^.+:[0-9]+$")]
    management: Annotated[str, StringConstraints(pattern=r"^https?://")]
    models: tuple[Name, ...] = Field(default=("all",), min_length=1)
    key_file: Path | None = None
    max_in_flight: Annotated[int, Field(ge=1)] = 32
    # Calls per model handed to TorchServe at once; None = one per READY worker on CPU, batch
    # size x READY workers on a GPU (from the management API).
    max_sent_per_model: Annotated[int, Field(ge=1)] | None = None
    # How long a call whose client left (or whose deadline passed) may hold its slot.
    linger_s: Positive = 120.0
    connect_retries: Annotated[int, Field(ge=0)] = 2
    # What that TorchServe accepts / answers (its max_request_size / max_response_size).
    max_request_bytes: int = DEFAULT_MAX_REQUEST_SIZE
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_SIZE

    @pydantic.field_validator("grpc", mode="plain")
    @classmethod
    def _host_port(cls, value: object) -> str:
        if not isinstance(value, str) or ":" not in value:
            raise ValueError(f"grpc must be host:port, got {value!r}")
        return value

    @pydantic.field_validator("models", mode="before")
    @classmethod
    def _all_or_list(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @property
    def discovers(self) -> bool:
        """Whether the model list comes from the backend's management API."""
        return self.models == ("all",)


class TlsConfig(_Config):
    cert: pydantic.FilePath
    key: pydantic.FilePath


class HttpLimits(_Config):
    """The HTTP twin's server limits: a connection whose request head is slower than
    ``header_timeout_s`` is closed, a body stalled past ``body_timeout_s`` gets 408, an idle
    keep-alive connection closes after ``keep_alive_s``, and past ``max_connections`` a request
    gets 503 at once."""

    header_timeout_s: Positive = 10.0
    body_timeout_s: Positive = 30.0
    keep_alive_s: Annotated[int, Field(ge=1)] = 5
    max_connections: Annotated[int, Field(ge=1)] = 256


class GatewayConfig(_Config):
    """Everything the gateway needs; build once, validate, pass down."""

    backends: tuple[BackendConfig, ...] = Field(min_length=1)
    host: str = "127.0.0.1"
    grpc_port: Port = 50051
    http_port: Port | None = 8000
    max_image_bytes: Annotated[int, Field(ge=1)] = GATEWAY_IMAGE_CAP
    max_response_bytes: Annotated[int, Field(ge=1)] = DEFAULT_MAX_RESPONSE_BYTES
    default_timeout_s: Positive = 60.0
    model_timeouts_s: dict[str, Positive] = Field(default_factory=dict)
    # Kept from the client's deadline for the gateway to assemble and send its answer.
    deadline_reserve_ms: float = 20.0
    catalog_refresh_s: Positive = 5.0
    grace_s: Annotated[float, Field(ge=0)] = 10.0
    client_token: str | None = Field(default=None, repr=False)
    tls: TlsConfig | None = None
    allow_remote_without_token: bool = False
    json_logs: bool = True
    # HTTP Host names served (None: the loopback names when bound to loopback, else any).
    allowed_hosts: tuple[str, ...] | None = None
    allowed_origins: tuple[str, ...] = ()
    http_limits: HttpLimits = Field(default_factory=HttpLimits)

    @pydantic.model_validator(mode="after")
    def _check_backends(self) -> Self:
        names = [b.name for b in self.backends]
        if len(names) != len(set(names)):
            raise ValueError(f"backend names must differ: {names}")
        listed = [m for b in self.backends if not b.discovers for m in b.models]
        twice = sorted({m for m in listed if listed.count(m) > 1})
        if twice:
            raise ValueError(f"model(s) {', '.join(twice)} listed for more than one backend")
        for backend in self.backends:
            if backend.max_request_bytes < self.max_request_bytes:
                raise ValueError(
                    f"backend {backend.name!r} accepts {backend.max_request_bytes} bytes per "
                    f"request, less than the image cap {self.max_image_bytes} + "
                    f"{ENVELOPE_BYTES} bytes of envelope: raise its max_request_bytes "
                    "(TorchServe's max_request_size) or lower max_image_bytes"
                )
        return self

    @pydantic.model_validator(mode="after")
    def _check_exposure(self) -> Self:
        if is_loopback(self.host) or self.client_token or self.allow_remote_without_token:
            return self
        raise ValueError(
            f"host {self.host!r} is not a loopback address and no client token is set: set "
            f"client_token_file or ${TOKEN_ENV}, or allow_remote_without_token: true"
        )

    @property
    def max_request_bytes(self) -> int:
        """What the gateway's gRPC server accepts: the image cap plus the envelope, so an image
        just over the cap still arrives and is refused by the edge, naming the cap."""
        return self.max_image_bytes + ENVELOPE_BYTES

    @property
    def served_hosts(self) -> tuple[str, ...]:
        """The Host names the HTTP twin answers; ``("*",)`` = any."""
        if self.allowed_hosts is not None:
            return tuple(h.lower() for h in self.allowed_hosts)
        return LOOPBACK_NAMES if is_loopback(self.host) else ("*",)

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


def _path(value: object, base: Path) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path


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


def _resolve_paths(values: dict[str, Any], base: Path) -> None:
    """Relative paths in the YAML are relative to its folder."""
    for backend in values.get("backends") or ():
        if isinstance(backend, dict) and backend.get("key_file") is not None:
            backend["key_file"] = _path(backend["key_file"], base)
    tls = values.get("tls")
    if isinstance(tls, dict):
        values["tls"] = {k: _path(v, base) if k in ("cert", "key") else v for k, v in tls.items()}


def config_from_mapping(
    raw: Mapping[str, Any], *, base: Path, source: str, env: Mapping[str, str]
) -> GatewayConfig:
    """A validated config from parsed YAML; ``source`` names the file in error messages."""
    if "client_token" in raw:
        raise ConfigError(f"{source}.client_token: unknown key (use client_token_file)")
    values = {
        k: [dict(b) if isinstance(b, Mapping) else b for b in v]
        if k == "backends" and isinstance(v, list)
        else v
        for k, v in raw.items()
    }
    values["client_token"] = _client_token(values, env, base)
    _resolve_paths(values, base)
    return GatewayConfig.parse(values, source)


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
