"""A typed, validated TorchServe configuration and its rendered ``config.properties``.

Property names are TorchServe 0.12's (``org.pytorch.serve.util.ConfigManager``). The defaults:

* everything binds to 127.0.0.1 — REST inference 8080, management 8081, metrics 8082, gRPC
  inference 7070, gRPC management 7071 (TorchServe's own); a port of 0 means "pick a free one"
  (:meth:`TorchServeConfig.with_free_ports`, for tests);
* token authorization on, keys expiring after 60 minutes (TorchServe parses
  ``token_expiration_min`` as a double, so fractions of a minute work);
* ``max_request_size`` = the gateway's 32 MiB image cap + 2 MiB for the gRPC envelope and option
  keys (TorchServe's default, 6553500 B, would refuse a large DICOM); ``max_response_size`` = 64
  MiB, one item's result (the handler caps a map at 1024 x 1024 float32 = 4 MiB per method);
* one worker per model unless the archive says otherwise (archives set their own, planned by
  handlers/placement.py), TorchServe's default job queue (100) and timeouts (120 s);
* Prometheus metrics, no model management API, ``TS_*`` environment overrides off;
* sized for the machine (``cores``, default: this process's CPUs): on 2 cores or fewer the JVM
  runs with the serial collector and the C1 compiler only (:data:`SMALL_MACHINE_JVM_FLAGS`) and
  netty with one server and one client thread; above that, TorchServe's and the JVM's defaults;
* logging by the shipped ``log4j2.xml`` (per-job lines at WARN, each line written once).

The JVM options (heap, flags, log config) are also rendered as ``vmargs``, which is where
``torchserve --foreground`` (the container entrypoint) takes them from.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import string
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Literal

from ptxplain.errors import ConfigError
from ptxplain.machine import cpu_cores

__all__ = [
    "DEFAULT_MAX_REQUEST_SIZE",
    "DEFAULT_MAX_RESPONSE_SIZE",
    "GATEWAY_IMAGE_CAP",
    "LOG_CONFIG",
    "SMALL_MACHINE_CORES",
    "SMALL_MACHINE_JVM_FLAGS",
    "TORCHSERVE_DEFAULT_MAX_SIZE",
    "Ports",
    "TorchServeConfig",
]

MIB = 1024 * 1024
GATEWAY_IMAGE_CAP = 32 * MIB
TORCHSERVE_DEFAULT_MAX_SIZE = 6_553_500
DEFAULT_MAX_REQUEST_SIZE = GATEWAY_IMAGE_CAP + 2 * MIB
DEFAULT_MAX_RESPONSE_SIZE = 64 * MIB
_JAVA_INT_MAX = 2**31 - 1
# Workers talk to the frontend over Unix sockets named <java.io.tmpdir>/.ts.sock.<port>;
# a socket path must fit sun_path (108 bytes with the terminating NUL).
_SOCKET_PATH_MAX = 107
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_TEMPLATE = Path(__file__).with_name("config.properties")
LOG_CONFIG = Path(__file__).with_name("log4j2.xml")
# At or below this many cores the frontend is tuned for a small machine. Measured on 2 cores
# serving five models (docs/torchserve.md): the frontend's CPU fell from 0.18-0.20 to 0.08 cores.
SMALL_MACHINE_CORES = 2
SMALL_MACHINE_JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
_JVM_FLAG = re.compile(r"^-\S+$")
_REPO_ROOT = Path(__file__).resolve().parents[2]

MetricsMode = Literal["prometheus", "log", "legacy"]


@dataclasses.dataclass(frozen=True)
class Ports:
    """The five listening ports; 0 = pick a free one when resolved."""

    inference: int = 8080
    management: int = 8081
    metrics: int = 8082
    grpc_inference: int = 7070
    grpc_management: int = 7071

    @classmethod
    def from_base(cls, base: int) -> Ports:
        """``base`` .. ``base + 4`` in the order inference, management, metrics, gRPC x2."""
        return cls(base, base + 1, base + 2, base + 3, base + 4)

    def items(self) -> list[tuple[str, int]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]

    def validate(self) -> None:
        for name, port in self.items():
            if not 0 <= port <= 65535:
                raise ConfigError(f"port {name}={port} is outside 0..65535")
        taken = [port for _, port in self.items() if port]
        if len(taken) != len(set(taken)):
            raise ConfigError(f"ports must differ: {dict(self.items())}")

    def with_free_ports(self, host: str) -> Ports:
        """Replace every 0 by a port that is free on ``host`` now (all picked at once)."""
        with ExitStack() as stack:
            chosen = {}
            for name, port in self.items():
                if port == 0:
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    sock.bind((host, 0))
                    chosen[name] = sock.getsockname()[1]
            return dataclasses.replace(self, **chosen)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not 0 < value <= _JAVA_INT_MAX:
            raise ConfigError(f"{name} must be in 1..{_JAVA_INT_MAX}, got {value}")


def _property_value(text: str, name: str) -> str:
    """Escape a value for a Java .properties file; refuse what cannot be written safely."""
    if any(ch in text for ch in "\r\n\0") or "$$" in text:
        raise ConfigError(f"{name} {text!r} contains a newline, NUL or '$$'")
    return text.replace("\\", "\\\\")


@dataclasses.dataclass(frozen=True)
class TorchServeConfig:
    """Everything needed to start one TorchServe; build once, validate, pass down."""

    model_store: Path
    run_dir: Path
    host: str = "127.0.0.1"
    ports: Ports = dataclasses.field(default_factory=Ports)
    models: tuple[str, ...] = ("all",)
    token_auth: bool = True
    token_expiration_min: float = 60.0
    metrics_mode: MetricsMode = "prometheus"
    max_request_size: int = DEFAULT_MAX_REQUEST_SIZE
    max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE
    default_workers_per_model: int = 1
    job_queue_size: int = 100
    default_response_timeout_s: int = 120
    default_startup_timeout_s: int = 120
    enable_envvars_config: bool = False
    jvm_heap_mb: int = 2048
    # JVM options besides heap and log config; None = SMALL_MACHINE_JVM_FLAGS on a small machine
    # (``cores`` <= SMALL_MACHINE_CORES), else none.
    jvm_flags: tuple[str, ...] | None = None
    # Frontend netty threads (number_of_netty_threads / netty_client_threads); None = 1 on a
    # small machine, else 0; 0 = TorchServe's default (its netty's: scaled with the cores).
    netty_threads: int | None = None
    netty_client_threads: int | None = None
    log_config: Path = LOG_CONFIG
    # The cores the server runs on: what the defaults above are derived from.
    cores: int = dataclasses.field(default_factory=cpu_cores)
    python: Path = dataclasses.field(default_factory=lambda: Path(sys.executable))
    pythonpath: tuple[Path, ...] = (_REPO_ROOT,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_store", Path(self.model_store).absolute())
        object.__setattr__(self, "run_dir", Path(self.run_dir).absolute())
        self.validate()

    def validate(self) -> None:
        self.ports.validate()
        _check_positive(
            max_request_size=self.max_request_size,
            max_response_size=self.max_response_size,
            default_workers_per_model=self.default_workers_per_model,
            job_queue_size=self.job_queue_size,
            default_response_timeout_s=self.default_response_timeout_s,
            default_startup_timeout_s=self.default_startup_timeout_s,
            jvm_heap_mb=self.jvm_heap_mb,
            cores=self.cores,
        )
        self._validate_frontend()
        if self.token_expiration_min * 60 < 1:
            raise ConfigError(
                f"token_expiration_min={self.token_expiration_min} is under one second "
                "(TorchServe truncates the expiry to whole seconds)"
            )
        if self.metrics_mode not in ("prometheus", "log", "legacy"):
            raise ConfigError(
                f"metrics_mode must be prometheus, log or legacy, not {self.metrics_mode!r}"
            )
        if not self.models:
            raise ConfigError("models must be ('all',) or name the archives to load")
        for name in self.models:
            if not _MODEL_NAME.match(name):
                raise ConfigError(f"model name {name!r} is not a valid TorchServe model name")
        self._validate_paths()

    def _validate_frontend(self) -> None:
        for name in ("netty_threads", "netty_client_threads"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1024:
                raise ConfigError(
                    f"{name} must be in 0..1024 (0 = TorchServe's default), got {value}"
                )
        for flag in self.jvm_flags or ():
            if not _JVM_FLAG.match(flag) or "$$" in flag:
                raise ConfigError(f"JVM flag {flag!r} must be one word starting with '-'")
        if any(ch.isspace() for ch in str(self.log_config)):
            raise ConfigError(f"log_config {self.log_config} must not contain whitespace (vmargs)")

    def _validate_paths(self) -> None:
        _property_value(str(self.model_store), "model_store")
        _property_value(self.host, "host")
        socket_path = self.tmp_dir / ".ts.sock.65535"
        if len(str(socket_path).encode()) > _SOCKET_PATH_MAX:
            raise ConfigError(
                f"run_dir {self.run_dir} is too long: worker sockets such as {socket_path} "
                f"must fit {_SOCKET_PATH_MAX} bytes"
            )

    # -- derived paths and addresses ------------------------------------------------------------

    @property
    def properties_path(self) -> Path:
        return self.run_dir / "config.properties"

    @property
    def key_file(self) -> Path:
        """Where TorchServe writes its tokens (its working directory is ``run_dir``)."""
        return self.run_dir / "key_file.json"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def log_path(self) -> Path:
        """The server's stdout + stderr (log4j's console output includes the workers' logs)."""
        return self.log_dir / "torchserve.log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "torchserve.pid"

    @property
    def tmp_dir(self) -> Path:
        """java.io.tmpdir: extracted archives and the worker sockets live here."""
        return self.run_dir / "tmp"

    def _url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    @property
    def inference_url(self) -> str:
        return self._url(self.ports.inference)

    @property
    def management_url(self) -> str:
        return self._url(self.ports.management)

    @property
    def metrics_url(self) -> str:
        return self._url(self.ports.metrics)

    @property
    def grpc_inference_target(self) -> str:
        return f"{self.host}:{self.ports.grpc_inference}"

    @property
    def grpc_management_target(self) -> str:
        return f"{self.host}:{self.ports.grpc_management}"

    # -- the frontend: JVM and netty --------------------------------------------------------------

    @property
    def small_machine(self) -> bool:
        return self.cores <= SMALL_MACHINE_CORES

    def effective_jvm_flags(self) -> tuple[str, ...]:
        if self.jvm_flags is not None:
            return self.jvm_flags
        return SMALL_MACHINE_JVM_FLAGS if self.small_machine else ()

    def effective_netty_threads(self) -> tuple[int, int]:
        """(number_of_netty_threads, netty_client_threads); 0 = TorchServe's default."""
        derived = 1 if self.small_machine else 0
        server, client = self.netty_threads, self.netty_client_threads
        return (derived if server is None else server, derived if client is None else client)

    def vm_args(self) -> list[str]:
        """The JVM options: heap, flags, log config (``vmargs`` for ``torchserve``)."""
        return [
            f"-Xmx{self.jvm_heap_mb}m",
            *self.effective_jvm_flags(),
            f"-Dlog4j.configurationFile={self.log_config}",
        ]

    # -- derived configurations -----------------------------------------------------------------

    def with_free_ports(self) -> TorchServeConfig:
        return dataclasses.replace(self, ports=self.ports.with_free_ports(self.host))

    def expected_models(self) -> list[str]:
        """Model names that must come up: every ``*.mar`` in the store for ``all``."""
        if self.models == ("all",):
            return sorted(p.stem for p in self.model_store.glob("*.mar"))
        return list(self.models)

    # -- rendering ------------------------------------------------------------------------------

    def render(self) -> str:
        """The ``config.properties`` text (the template next to this module, filled in)."""
        template = string.Template(_TEMPLATE.read_text())
        ports = self.ports
        load = "all" if self.models == ("all",) else ",".join(f"{m}.mar" for m in self.models)
        netty_threads, netty_client_threads = self.effective_netty_threads()
        return template.substitute(
            host=_property_value(self.host, "host"),
            inference_port=ports.inference,
            management_port=ports.management,
            metrics_port=ports.metrics,
            grpc_inference_port=ports.grpc_inference,
            grpc_management_port=ports.grpc_management,
            model_store=_property_value(str(self.model_store), "model_store"),
            load_models=load,
            disable_token_authorization=_bool(not self.token_auth),
            token_expiration_min=repr(float(self.token_expiration_min)),
            default_workers_per_model=self.default_workers_per_model,
            job_queue_size=self.job_queue_size,
            default_response_timeout=self.default_response_timeout_s,
            default_startup_timeout=self.default_startup_timeout_s,
            max_request_size=self.max_request_size,
            max_response_size=self.max_response_size,
            metrics_mode=self.metrics_mode,
            enable_envvars_config=_bool(self.enable_envvars_config),
            number_of_netty_threads=netty_threads,
            netty_client_threads=netty_client_threads,
            vmargs=_property_value(" ".join(self.vm_args()), "vmargs"),
        )

    def write_properties(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.properties_path.write_text(self.render())
        return self.properties_path


def _bool(value: bool) -> str:
    return "true" if value else "false"
