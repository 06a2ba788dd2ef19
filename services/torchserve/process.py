"""Run one TorchServe as a process group we own: start, wait until ready, stop.

TorchServe's ``torchserve`` launcher keeps a machine-wide pid file (``$TMP/.model_server.pid``)
and refuses a second server; its ``--stop`` stops whichever server that file names. So ptxplain
launches the Java frontend itself, as ``torchserve --foreground`` would, in its own session
(process group = the JVM and its Python workers), with:

* cwd = the run directory (``key_file.json`` lands there), ``java.io.tmpdir`` = ``run/tmp``
  (extracted archives and worker sockets, so servers never collide), logs in ``run/logs``;
* the config's JVM options: heap, the small-machine flags, the shipped log4j2.xml
  (:meth:`TorchServeConfig.vm_args`);
* PATH / PYTHONPATH so the workers run this virtualenv's Python and import this repository;
* stdout + stderr in ``run/logs/torchserve.log``, and a pid file ``run/torchserve.pid``.

Stopping sends SIGTERM to the process group, waits, then SIGKILLs what is left.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ptxplain.errors import BackendError, BackendTimeoutError, ConfigError, PtxplainError
from services.torchserve.auth import token_source
from services.torchserve.client import RestClient
from services.torchserve.config import TorchServeConfig
from services.torchserve.management import ManagementClient, management_client

__all__ = [
    "TorchServeProcess",
    "check_ports_free",
    "group_members",
    "launch_command",
    "log_tail",
    "running_pid",
    "stop_pid_file",
    "wait_until_ready",
]

log = logging.getLogger(__name__)
_MAIN_CLASS = "org.pytorch.serve.ModelServer"


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise ConfigError("no java found (set JAVA_HOME or put java 17 on PATH)")
    return java


def _torchserve_home() -> Path:
    spec = importlib.util.find_spec("ts")
    if spec is None or spec.origin is None:
        raise ConfigError("the torchserve package (ts) is not installed in this Python")
    return Path(spec.origin).resolve().parents[1]


def launch_command(config: TorchServeConfig) -> list[str]:
    """The JVM command line that ``torchserve --foreground`` would run, minus its pid file."""
    home = _torchserve_home()
    if not config.log_config.is_file():
        raise ConfigError(f"TorchServe log config {config.log_config} does not exist")
    return [
        _java(),
        f"-Dmodel_server_home={home}",
        f"-Djava.io.tmpdir={config.tmp_dir}",
        *config.vm_args(),
        "-cp",
        f".:{home / 'ts' / 'frontend'}/*",
        _MAIN_CLASS,
        "--python",
        str(config.python),
        "-f",
        str(config.properties_path),
        "-ncs",
    ]


def _child_env(config: TorchServeConfig) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TS_CONFIG_FILE", None)  # would override -f
    env["PATH"] = os.pathsep.join([str(config.python.parent), env.get("PATH", "")])
    paths = [str(p) for p in config.pythonpath]
    env["PYTHONPATH"] = os.pathsep.join(
        [*paths, env["PYTHONPATH"]] if env.get("PYTHONPATH") else paths
    )
    env["LOG_LOCATION"] = env["METRICS_LOCATION"] = str(config.log_dir)
    return env


def check_ports_free(config: TorchServeConfig) -> None:
    """A :class:`ConfigError` naming the first port something already listens on."""
    for name, port in config.ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((config.host, port))
            except OSError as exc:
                raise ConfigError(
                    f"port {port} ({name}) on {config.host} is already in use: {exc.strerror}"
                ) from exc


def log_tail(config: TorchServeConfig, lines: int = 40) -> str:
    try:
        text = config.log_path.read_text(errors="replace")
    except OSError:
        return "(no log yet)"
    return "\n".join(text.splitlines()[-lines:])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def _terminate_group(pgid: int, grace_s: float, reap: Callable[[], object] | None = None) -> None:
    """SIGTERM the group, wait up to ``grace_s``, SIGKILL the rest, wait until it is empty."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if reap:
                reap()
            if not group_members(pgid):
                return
            time.sleep(0.1)
        if sig == signal.SIGTERM:
            log.warning("TorchServe group %d still alive after %.0fs; killing it", pgid, grace_s)
    raise BackendError(f"TorchServe process group {pgid} survived SIGKILL: {group_members(pgid)}")


def _is_torchserve(pid: int, config: TorchServeConfig) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return _MAIN_CLASS.encode() in cmdline and str(config.properties_path).encode() in cmdline


def running_pid(config: TorchServeConfig) -> int | None:
    """The pid in the run directory's pid file, if that process is this TorchServe."""
    try:
        pid = int(config.pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _is_torchserve(pid, config) else None


def _cleanup(config: TorchServeConfig) -> None:
    for path in (config.pid_file, config.key_file):
        path.unlink(missing_ok=True)
    shutil.rmtree(config.tmp_dir, ignore_errors=True)


def stop_pid_file(config: TorchServeConfig, grace_s: float = 30.0) -> bool:
    """Stop the server a pid file names (started by another process); False if none runs."""
    pid = running_pid(config)
    if pid is not None:
        _terminate_group(os.getpgid(pid), grace_s)
    _cleanup(config)
    return pid is not None


class TorchServeProcess:
    """One TorchServe started by this process. ``start()`` returns once every model is READY."""

    def __init__(self, config: TorchServeConfig) -> None:
        self.config = config
        self._proc: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 180.0) -> TorchServeProcess:
        config = self.config
        if running_pid(config) is not None:
            raise ConfigError(
                f"a TorchServe already runs from {config.run_dir} ({config.pid_file})"
            )
        check_ports_free(config)
        _cleanup(config)
        for folder in (config.log_dir, config.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        config.write_properties()
        started = time.monotonic()
        with config.log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(
                launch_command(config),
                cwd=config.run_dir,
                env=_child_env(config),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        config.pid_file.write_text(f"{self._proc.pid}\n")
        try:
            wait_until_ready(config, timeout_s, self._exit_code)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        log.info("TorchServe ready in %.1fs (pid %d)", self.startup_s, self._proc.pid)
        return self

    def _exit_code(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def stop(self, grace_s: float = 30.0) -> None:
        if self._proc is None:
            return
        try:
            _terminate_group(self._proc.pid, grace_s, reap=self._proc.poll)
            self._proc.wait(timeout=5)
        finally:
            _cleanup(self.config)

    def __enter__(self) -> TorchServeProcess:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- readiness --------------------------------------------------------------------------------


def _not_ready(config: TorchServeConfig, management: ManagementClient) -> list[str]:
    """What is still missing: unregistered models and models without a READY worker."""
    waiting = []
    for name in config.expected_models():
        try:
            status = management.describe(name)
        except PtxplainError as exc:
            waiting.append(f"{name}: {exc}")
            continue
        if status.ready_workers == 0:
            waiting.append(f"{name}: workers {list(status.worker_states) or 'none yet'}")
    return waiting


def _probe(config: TorchServeConfig, rest: RestClient, management: ManagementClient) -> list[str]:
    if config.token_auth and not config.key_file.exists():
        return ["key file not written yet"]
    try:
        health = rest.ping().get("status")
    except PtxplainError as exc:
        return [f"ping: {exc}"]
    if health != "Healthy":
        return [f"ping: {health}"]
    return _not_ready(config, management)


def wait_until_ready(
    config: TorchServeConfig,
    timeout_s: float,
    exit_code: Callable[[], int | None] | None = None,
) -> None:
    """Poll /ping and the management API until every expected model has a READY worker."""
    deadline = time.monotonic() + timeout_s
    waiting = ["not started"]
    rest = RestClient(config.inference_url, token_source(config), timeout_s=5)
    with rest, management_client(config) as management:
        while time.monotonic() < deadline:
            code = exit_code() if exit_code else None
            if code is not None:
                raise BackendError(
                    f"TorchServe exited with code {code} while starting; "
                    f"log {config.log_path}:\n{log_tail(config)}"
                )
            waiting = _probe(config, rest, management)
            if not waiting:
                return
            time.sleep(0.25)
    raise BackendTimeoutError(
        f"TorchServe not ready after {timeout_s:.0f}s ({'; '.join(waiting)}); "
        f"log {config.log_path}:\n{log_tail(config)}"
    )
