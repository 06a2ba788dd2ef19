"""The local stack behind ``make deploy`` / ``make stop``: TorchServe serving every archive in the
model store, and the gateway in front of it, both in the background, everything in one run
folder::

    run/config.properties  run/key_file.json  run/torchserve.pid  run/tmp/   (TorchServe's)
    run/gateway.yaml       run/gateway.pid
    run/logs/torchserve.log  run/logs/gateway.log

``deploy`` starts what is not running from the run folder and leaves what runs alone: on a fresh
folder both, after a crash of TorchServe only TorchServe (the running gateway finds it again by
itself), after a crash of the gateway only the gateway; with both running it only waits until
they report healthy. A taken port is an error naming it. It builds random-init archives for a
default set when the store has none (labelled untrained), starts TorchServe with the launcher
of :mod:`services.torchserve.process`, then the gateway, waits until both report healthy, and
returns the endpoints; on failure it stops what it started. ``stop`` stops exactly the
processes whose pid files it finds there (each checked to be the process deploy started).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ptxplain.errors import BackendError, ConfigError
from services.torchserve import Ports, TorchServeConfig, TorchServeProcess, stop_pid_file
from services.torchserve.process import check_ports_free, running_pid

__all__ = ["DEFAULT_MODELS", "StackConfig", "deploy", "gateway_command", "stop"]

DEFAULT_MODELS = ("resnet18", "vgg16_bn", "vit_s16", "densenet121", "efficientnet_b0")
_GATEWAY_MAIN = "import sys; from ptxplain.cli import main; sys.exit(main())"


def gateway_command(config_yaml: Path) -> list[str]:
    """``ptxplain gateway --config FILE`` with this interpreter, no console script needed."""
    return [sys.executable, "-c", _GATEWAY_MAIN, "gateway", "--config", str(config_yaml)]


@dataclasses.dataclass(frozen=True)
class StackConfig:
    """Where and how the local stack runs; resolved once from the CLI's flags."""

    model_store: Path
    run_dir: Path
    host: str = "127.0.0.1"
    torchserve_ports: Ports = dataclasses.field(default_factory=Ports)
    grpc_port: int = 50051
    http_port: int = 8000
    default_models: tuple[str, ...] = DEFAULT_MODELS
    default_input_size: int | None = None
    timeout_s: float = 600.0
    grace_s: float = 10.0
    # In-flight model calls the gateway allows on the local backend before it sheds
    # (RESOURCE_EXHAUSTED / 429). An explain with every model holds one slot per model.
    max_in_flight: int = 128

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_store", Path(self.model_store).absolute())
        object.__setattr__(self, "run_dir", Path(self.run_dir).absolute())
        taken = [port for _, port in self.torchserve_ports.items()]
        if self.grpc_port in taken or self.http_port in taken or self.grpc_port == self.http_port:
            raise ConfigError(
                f"gateway ports {self.grpc_port}/{self.http_port} must differ from each other "
                f"and from TorchServe's {taken}"
            )

    @property
    def torchserve(self) -> TorchServeConfig:
        return TorchServeConfig(
            model_store=self.model_store,
            run_dir=self.run_dir,
            host=self.host,
            ports=self.torchserve_ports,
        )

    @property
    def gateway_yaml(self) -> Path:
        return self.run_dir / "gateway.yaml"

    @property
    def gateway_pid_file(self) -> Path:
        return self.run_dir / "gateway.pid"

    @property
    def gateway_log(self) -> Path:
        return self.run_dir / "logs" / "gateway.log"

    def endpoints(self) -> dict[str, str]:
        ts = self.torchserve
        return {
            "gateway_grpc": f"{self.host}:{self.grpc_port}",
            "gateway_http": f"http://{self.host}:{self.http_port}",
            "viewer": f"http://{self.host}:{self.http_port}/",
            "torchserve_inference": ts.inference_url,
            "torchserve_grpc": ts.grpc_inference_target,
            "torchserve_management": ts.management_url,
            "torchserve_metrics": ts.metrics_url,
            "run_dir": str(self.run_dir),
        }


def _check_port(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"port {port} ({what}) on {host} is already in use: {exc.strerror}"
            ) from exc


def gateway_pid(stack: StackConfig) -> int | None:
    """The pid in gateway.pid, if that process is the gateway deploy started from this run dir."""
    try:
        pid = int(stack.gateway_pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    return pid if str(stack.gateway_yaml).encode() in cmdline else None


def _ensure_archives(stack: StackConfig, say: object) -> list[str]:
    archives = sorted(stack.model_store.glob("*.mar"))
    if archives:
        return [a.stem for a in archives]
    from handlers.archive import WeightsSource, build_archive

    for arch in stack.default_models:
        built = build_archive(
            arch, stack.model_store, weights=WeightsSource(input_size=stack.default_input_size)
        )
        if callable(say):
            say(f"built {built.path.name} (random-init, untrained) in {built.seconds:.1f}s")
    return list(stack.default_models)


def _write_gateway_yaml(stack: StackConfig) -> None:
    ts = stack.torchserve
    config = {
        "host": stack.host,
        "grpc_port": stack.grpc_port,
        "http_port": stack.http_port,
        "grace_s": stack.grace_s,
        "backends": [
            {
                "name": "local",
                "grpc": ts.grpc_inference_target,
                "management": ts.management_url,
                "key_file": str(ts.key_file),
                "models": "all",
                "max_request_bytes": ts.max_request_size,
                "max_response_bytes": ts.max_response_size,
                "max_in_flight": stack.max_in_flight,
            }
        ],
    }
    stack.gateway_yaml.write_text(yaml.safe_dump(config, sort_keys=False))


def _spawn_gateway(stack: StackConfig) -> subprocess.Popen[bytes]:
    stack.gateway_log.parent.mkdir(parents=True, exist_ok=True)
    command = gateway_command(stack.gateway_yaml)
    with stack.gateway_log.open("ab") as log_file:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack.gateway_pid_file.write_text(f"{process.pid}\n")
    return process


def _wait_gateway(stack: StackConfig, process: subprocess.Popen[bytes] | None) -> None:
    import requests

    from services.gateway.client import ExplainerClient

    deadline = time.monotonic() + stack.timeout_s
    with ExplainerClient(f"{stack.host}:{stack.grpc_port}") as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise BackendError(
                    f"the gateway exited with code {process.returncode}; log {stack.gateway_log}:\n{_tail(stack.gateway_log)}"
                )
            with contextlib.suppress(Exception):
                grpc_ok = client.health(timeout_s=2.0) == "SERVING"
                http_ok = (
                    requests.get(
                        f"http://{stack.host}:{stack.http_port}/readyz", timeout=2
                    ).status_code
                    == 200
                )
                if grpc_ok and http_ok:
                    return
            time.sleep(0.3)
    raise BackendError(
        f"the gateway did not report healthy in {stack.timeout_s:.0f}s; log {stack.gateway_log}:\n{_tail(stack.gateway_log)}"
    )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def deploy(stack: StackConfig, say: object = None) -> dict[str, str]:
    """Start whichever of TorchServe and the gateway is down; return the endpoints."""
    ts = stack.torchserve
    gateway_up, torchserve_up = gateway_pid(stack) is not None, running_pid(ts) is not None
    _say(say, _running_line(stack, gateway_up, torchserve_up))
    if not torchserve_up:
        check_ports_free(ts)
    if not gateway_up:
        _check_port(stack.host, stack.grpc_port, "gateway gRPC")
        _check_port(stack.host, stack.http_port, "gateway HTTP")
    started: list[str] = []
    try:
        if not torchserve_up:
            models = _ensure_archives(stack, say)
            _say(say, f"starting TorchServe with {', '.join(models)} (log {ts.log_path})")
            TorchServeProcess(ts).start(timeout_s=stack.timeout_s)  # keeps running after we exit
            started.append("torchserve")
        if not gateway_up:
            _write_gateway_yaml(stack)
            _say(say, f"starting the gateway (log {stack.gateway_log})")
            process = _spawn_gateway(stack)
            started.append("gateway")
            _wait_gateway(stack, process)
        else:
            _wait_gateway(stack, None)
    except BaseException:
        _stop_started(stack, started)
        raise
    return stack.endpoints()


def _running_line(stack: StackConfig, gateway_up: bool, torchserve_up: bool) -> str:
    up = [
        name
        for name, running in (("TorchServe", torchserve_up), ("gateway", gateway_up))
        if running
    ]
    if not up:
        return f"starting the stack in {stack.run_dir}"
    return f"{' and '.join(up)} already running{'' if len(up) == 2 else '; starting the rest'}"


def _say(say: object, line: str) -> None:
    if callable(say):
        say(line)


def _stop_started(stack: StackConfig, started: list[str]) -> None:
    if "gateway" in started:
        _stop_gateway(stack)
    if "torchserve" in started:
        stop_pid_file(stack.torchserve, grace_s=stack.grace_s + 20.0)


def _stop_gateway(stack: StackConfig) -> bool:
    pid = gateway_pid(stack)
    stack.gateway_pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    for sig, wait_s in ((signal.SIGTERM, stack.grace_s + 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child
            if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
                return True
            time.sleep(0.1)
    raise BackendError(f"the gateway (pid {pid}) survived SIGKILL")


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def stop(stack: StackConfig) -> list[str]:
    """Stop the gateway, then TorchServe, that ``deploy`` started from this run dir."""
    stopped = []
    if _stop_gateway(stack):
        stopped.append("gateway")
    if stop_pid_file(stack.torchserve, grace_s=stack.grace_s + 20.0):
        stopped.append("torchserve")
    return stopped
