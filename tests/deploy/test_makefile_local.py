"""`make deploy` (DEPLOY=local) checks its prerequisites before installing or training anything:
Java 17+ for TorchServe, the stack's ports free on loopback, and disk."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

from tests.deploy.test_makefile import _make


def _java(tmp_path: Path, version: str) -> Path:
    script = tmp_path / "java"
    script.write_text(f"#!/bin/bash\necho 'openjdk version \"{version}\" 2021-01-19' >&2\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ports() -> list[str]:
    """Every port of the stack on a free one (nothing here listens on them)."""
    names = (
        "grpc-port",
        "management-port",
        "metrics-port",
        "inference-port",
        "grpc-management-port",
    )
    ts = " ".join(f"--ts-{n} {_free_port()}" for n in names)
    return [
        f"GATEWAY_GRPC_PORT={_free_port()}",
        f"GATEWAY_HTTP_PORT={_free_port()}",
        f"TS_PORTS={ts}",
    ]


def test_a_missing_or_old_java_stops_deploy_before_the_venv_and_training(tmp_path: Path) -> None:
    result = _make("deploy", "JAVA=/nonexistent/java", "VENV=/nonexistent/venv", cwd=tmp_path)
    assert result.returncode != 0 and "needs Java 17 or newer" in result.stderr
    assert not (tmp_path / "data").exists() and "pip" not in result.stdout
    java = _java(tmp_path, "11.0.2")
    result = _make("deploy", f"JAVA={java}", "VENV=/nonexistent/venv", cwd=tmp_path)
    assert result.returncode != 0 and "is version 11" in result.stderr


def test_a_busy_port_and_too_little_disk_are_named(tmp_path: Path) -> None:
    java = _java(tmp_path, "17.0.15")
    assert _make("preflight-local", f"JAVA={java}", *_ports(), cwd=tmp_path).returncode == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _make(
            "deploy", f"JAVA={java}", *_ports(), f"GATEWAY_HTTP_PORT={port}", cwd=tmp_path
        )
    assert result.returncode != 0 and f"port(s) {port} in use" in result.stderr
    result = _make(
        "preflight-local", f"JAVA={java}", *_ports(), "MIN_FREE_GIB=1000000", cwd=tmp_path
    )
    assert result.returncode != 0 and "GiB free here" in result.stderr
