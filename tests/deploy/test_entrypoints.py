"""The images' commands, run here as the images would run them (no Docker engine needed).

* the gateway's ENTRYPOINT in a sandbox holding only what its image holds (image_sandbox.py):
  it must serve, pass its own HEALTHCHECK, and stop cleanly on SIGTERM;
* the model server's ENTRYPOINT (TorchServe's launcher, --foreground) with the committed
  Kubernetes config.properties (token authorization off), the group's --models list, and the
  image's environment: its HEALTHCHECK must pass without a token, and SIGTERM to the process
  group (what tini -g sends) must stop the launcher, the JVM and the workers.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import yaml

from services.containers import torchserve_properties as props
from services.torchserve import group_members
from tests.conftest import LiveTorchServe
from tests.deploy.dockerfile import exec_form, runtime_stage
from tests.deploy.image_sandbox import sandbox
from tests.deploy.support import DOCKERFILES, REPO, free_port

pytestmark = pytest.mark.live


def _wait_until(check: Callable[[], bool], alive: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        if check():
            return True
        time.sleep(0.5)
    return False


def _healthcheck(dockerfile: Path, port: int) -> list[str]:
    """The image's HEALTHCHECK command, run with this Python, aimed at ``port``."""
    command = exec_form((runtime_stage(dockerfile).last("HEALTHCHECK") or "").partition(" CMD ")[2])
    url_port = ":8000/" if "gateway" in dockerfile.name else ":8080/"
    command = [c.replace(url_port, f":{port}/") for c in command]
    return [sys.executable, *command[1:]]


def _passes(command: list[str], env: dict[str, str], cwd: Path) -> Callable[[], bool]:
    def check() -> bool:
        result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, timeout=30)
        return result.returncode == 0

    return check


def _stop_group(process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while group_members(process.pid) and time.monotonic() < deadline:
        process.poll()
        time.sleep(0.2)
    left = group_members(process.pid)
    if left:
        os.killpg(process.pid, signal.SIGKILL)
    assert not left, f"processes left after SIGTERM: {left}"


def test_sandbox_refuses_what_the_gateway_image_lacks(tmp_path: Path) -> None:
    box = sandbox(DOCKERFILES["gateway"], tmp_path)
    assert {"grpc", "fastapi", "uvicorn", "yaml", "ptxplain", "services"} <= box.allowed
    for module in ("torch", "numpy", "handlers", "harness"):
        result = subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            env=box.env(),
            cwd=box.app,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, module


def test_gateway_image_command_serves_with_only_its_image(tmp_path: Path) -> None:
    box = sandbox(DOCKERFILES["gateway"], tmp_path)
    http_port, closed = free_port(), free_port()
    config = {
        "host": "127.0.0.1",
        "grpc_port": free_port(),
        "http_port": http_port,
        "backends": [
            {
                "name": "nowhere",
                "grpc": f"127.0.0.1:{closed}",
                "management": f"http://127.0.0.1:{closed}",
                "models": ["resnet18"],
            }
        ],
    }
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config))
    env = {**box.env(), "PTXPLAIN_GATEWAY_CONFIG": str(tmp_path / "gateway.yaml")}
    entrypoint = exec_form(runtime_stage(DOCKERFILES["gateway"]).last("ENTRYPOINT") or "")
    assert entrypoint[:3] == ["tini", "--", "python"]
    command = [sys.executable, *entrypoint[3:]]
    log = (tmp_path / "gateway.log").open("wb")
    process = subprocess.Popen(
        command,
        cwd=box.app,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        probe = _passes(_healthcheck(DOCKERFILES["gateway"], http_port), env, box.app)
        healthy = _wait_until(probe, lambda: process.poll() is None, 60)
        assert healthy, (tmp_path / "gateway.log").read_text()[-3000:]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, (tmp_path / "gateway.log").read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
        log.close()


def _local_properties(store: Path, ports: dict[int, int]) -> str:
    """The committed in-cluster config.properties, moved to loopback, free ports, ``store``."""
    text = (REPO / "k8s" / "base" / "model-server" / "config.properties").read_text()
    text = text.replace("0.0.0.0", "127.0.0.1").replace(str(props.MODEL_STORE), str(store))
    for default, port in ports.items():
        text = text.replace(f":{default}\n", f":{port}\n").replace(f"={default}\n", f"={port}\n")
    return text


def _image_env(tmp_path: Path, config: Path) -> dict[str, str]:
    """The model-server image's ENV, its paths moved under ``tmp_path``."""
    runtime = runtime_stage(DOCKERFILES["model-server"])
    image_env = dict(p.split("=", 1) for a in runtime.all("ENV") for p in shlex.split(a))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TS_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONDONTWRITEBYTECODE"] = image_env["PYTHONDONTWRITEBYTECODE"]
    env["TS_CONFIG_FILE"] = str(config)
    for name in ("TEMP", "LOG_LOCATION", "METRICS_LOCATION"):
        env[name] = str(tmp_path / name.lower())
        Path(env[name]).mkdir(parents=True, exist_ok=True)
    return env


def test_model_server_image_command_serves_its_group(
    torchserve: LiveTorchServe, tmp_path: Path
) -> None:
    ports = {
        8080: free_port(),
        8081: free_port(),
        8082: free_port(),
        7070: free_port(),
        7071: free_port(),
    }
    store = torchserve.config.model_store
    config = tmp_path / "config.properties"
    config.write_text(_local_properties(store, ports))
    assert "disable_token_authorization=true" in config.read_text()
    env = _image_env(tmp_path, config)
    entrypoint = exec_form(runtime_stage(DOCKERFILES["model-server"]).last("ENTRYPOINT") or "")
    command = [c.replace(str(props.MODEL_STORE), str(store)) for c in entrypoint[3:]]
    command += ["--models", "resnet18.mar"]  # one group's list, as Kubernetes passes it
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    log = (tmp_path / "torchserve.log").open("wb")
    process = subprocess.Popen(
        command,
        cwd=run_dir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        probe = _healthcheck(DOCKERFILES["model-server"], ports[8080])
        healthy = _wait_until(_passes(probe, env, run_dir), lambda: process.poll() is None, 240)
        assert healthy, (tmp_path / "torchserve.log").read_text()[-4000:]
        assert not (run_dir / "key_file.json").exists(), "token authorization must be off"
        listed = requests.get(f"http://127.0.0.1:{ports[8081]}/models", timeout=30).json()
        assert [m["modelName"] for m in listed["models"]] == ["resnet18"], listed
    finally:
        _stop_group(process)
        log.close()
