"""`make deploy DEPLOY=compose|k8s` and `make stop ...`: clear errors when a tool, the engine or
the cluster is missing, and the right commands when they are there (stand-in docker / kubectl
scripts that record how they were called; nothing is started, nothing leaves this machine)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from tests.deploy.support import REPO

_FAKE = """#!/bin/bash
echo "$COMPOSE_PROFILES $*" >> {log}
case "$*" in
  {fail}) exit 1 ;;
esac
exit 0
"""


def _make(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), *args]
    full_env = {**os.environ, "KUBECONFIG": "/nonexistent/kubeconfig", **(env or {})}
    return subprocess.run(
        command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120, check=False
    )


def _fake(tmp_path: Path, name: str, fail: str = "__never__") -> tuple[Path, Path]:
    log = tmp_path / f"{name}.log"
    script = tmp_path / name
    script.write_text(_FAKE.format(log=log, fail=fail))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def test_an_unknown_target_is_named() -> None:
    result = _make("deploy", "DEPLOY=swarm")
    assert result.returncode != 0
    assert "DEPLOY=swarm is not one of: local, compose, k8s" in result.stderr


def test_compose_without_docker_says_so() -> None:
    result = _make("deploy", "DEPLOY=compose", "DOCKER=/nonexistent/docker")
    assert result.returncode != 0 and "needs Docker" in result.stderr


def test_compose_without_an_engine_says_so(tmp_path: Path) -> None:
    docker, _ = _fake(tmp_path, "docker", fail="info")
    result = _make("stop", "DEPLOY=compose", f"DOCKER={docker}")
    assert result.returncode != 0 and "Docker engine is not reachable" in result.stderr


def test_compose_without_archives_says_so(tmp_path: Path) -> None:
    docker, log = _fake(tmp_path, "docker")
    result = _make("deploy", "DEPLOY=compose", f"DOCKER={docker}", cwd=tmp_path)
    assert result.returncode != 0 and "make archive" in result.stderr
    assert "compose up" not in log.read_text()


def test_compose_up_with_a_token_and_the_profile(tmp_path: Path) -> None:
    docker, log = _fake(tmp_path, "docker")
    (tmp_path / "model_store").mkdir()
    (tmp_path / "model_store" / "resnet18.mar").write_bytes(b"stand-in")
    result = _make("deploy", "DEPLOY=compose", "PROFILE=gpu", f"DOCKER={docker}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "gpu compose up --detach --build --wait" in log.read_text().splitlines()
    token = tmp_path / "run" / "compose" / "gateway-token"
    assert len(token.read_text().strip()) >= 32
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
    result = _make("stop", "DEPLOY=compose", "PROFILE=gpu", f"DOCKER={docker}", cwd=tmp_path)
    assert result.returncode == 0 and "gpu compose down" in log.read_text()


def test_k8s_without_a_cluster_context_says_so() -> None:
    result = _make("deploy", "DEPLOY=k8s")
    assert result.returncode != 0 and "no current context" in result.stderr


def test_k8s_with_an_unknown_overlay_says_so() -> None:
    result = _make("deploy", "DEPLOY=k8s", "OVERLAY=tpu")
    assert result.returncode != 0 and "k8s/overlays/tpu" in result.stderr


def test_k8s_applies_and_deletes_the_overlay(tmp_path: Path) -> None:
    kubectl, log = _fake(tmp_path, "kubectl")
    result = _make("deploy", "DEPLOY=k8s", "OVERLAY=gpu", f"KUBECTL={kubectl}")
    assert result.returncode == 0, result.stderr
    assert " apply -k k8s/overlays/gpu" in log.read_text().splitlines()
    result = _make("stop", "DEPLOY=k8s", "OVERLAY=gpu", f"KUBECTL={kubectl}")
    assert result.returncode == 0
    assert " delete -k k8s/overlays/gpu --ignore-not-found" in log.read_text().splitlines()
