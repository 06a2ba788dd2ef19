"""`ptxplain deploy` / `ptxplain stop`: the local stack in the background, in one run folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest
import requests

from ptxplain.errors import ConfigError
from services.gateway import ExplainerClient
from services.stack import StackConfig, deploy, gateway_pid, stop
from services.torchserve import Ports, group_members
from services.torchserve.process import check_ports_free, running_pid
from tests.conftest import _TIMINGS, LiveTorchServe
from tests.gateway.fakes import png_bytes


def free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def stack_config(store: Path, run_dir: Path, **kw: object) -> StackConfig:
    ports = free_ports(7)
    return StackConfig(
        model_store=store,
        run_dir=run_dir,
        torchserve_ports=Ports(*ports[:5]),
        grpc_port=ports[5],
        http_port=ports[6],
        timeout_s=300,
        grace_s=2,
        **kw,  # type: ignore[arg-type]
    )


def _answers(client: ExplainerClient) -> bool:
    try:
        return client.explain(png_bytes(), timeout_s=30)[0].results[0].status.code == 0
    except grpc.RpcError:
        return False


def _gone(config: StackConfig, pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # deploy ran in this process: reap its TorchServe
    try:
        check_ports_free(config.torchserve)
    except ConfigError:
        return False
    return not group_members(pid)


def _wait_answer(client: ExplainerClient, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not _answers(client):
        assert time.monotonic() < deadline, "the stack did not answer a good image"
        time.sleep(0.1)


def _kill_and_redeploy(config: StackConfig, ts_pid: int, gw_pid: int) -> int:
    """TorchServe killed outright; ``deploy`` again starts it alone and the gateway recovers."""
    os.killpg(ts_pid, signal.SIGKILL)
    killed = time.perf_counter()
    deadline = time.monotonic() + 60
    while not _gone(config, ts_pid):
        assert time.monotonic() < deadline, "TorchServe's group or ports outlived SIGKILL"
        time.sleep(0.2)
    deploy(config)
    restarted = time.perf_counter()
    new_pid = running_pid(config.torchserve)
    assert new_pid and new_pid != ts_pid and gateway_pid(config) == gw_pid
    with ExplainerClient(f"127.0.0.1:{config.grpc_port}") as client:
        _wait_answer(client, 30)
    answered = time.perf_counter()
    _TIMINGS["recovery after TorchServe killed"] = (
        f"deploy restarted TorchServe in {restarted - killed:.1f}s; the gateway answered "
        f"{answered - restarted:.2f}s later ({answered - killed:.1f}s in all)"
    )
    return new_pid


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    config = stack_config(tmp_path / "store", tmp_path / "run")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", config.http_port))
        taken.listen(1)
        with pytest.raises(ConfigError, match=f"port {config.http_port} \\(gateway HTTP\\)"):
            deploy(config)
    assert not (tmp_path / "store").exists() and not config.gateway_pid_file.exists()


def test_gateway_ports_must_differ_from_torchservess(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must differ"):
        StackConfig(model_store=tmp_path, run_dir=tmp_path, grpc_port=8080)


@pytest.mark.live
def test_deploy_runs_the_stack_in_the_background_and_stop_ends_it(
    torchserve: LiveTorchServe, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    resnet = next(a for a in torchserve.archives if a.name == "resnet18")
    shutil.copy(resnet.path, store / resnet.path.name)
    config = stack_config(store, tmp_path / "run")
    try:
        endpoints = deploy(config)
        ts_pid, gw_pid = running_pid(config.torchserve), gateway_pid(config)
        assert ts_pid and gw_pid and endpoints["gateway_grpc"] == f"127.0.0.1:{config.grpc_port}"
        assert os.getpgid(gw_pid) == gw_pid != os.getpgid(0)  # its own session: outlives us
        with ExplainerClient(endpoints["gateway_grpc"]) as client:
            [info] = client.list_models()
            assert (info.name, info.ready, info.trained) == ("resnet18", True, False)
            # TorchServe's first HTTP/2 handshake can outlast the gateway's quick connection
            # retries on a loaded machine: allow it a few seconds
            _wait_answer(client, 30)
        page = requests.get(endpoints["viewer"], timeout=10)  # the viewer, from the stack itself
        assert page.status_code == 200 and "ptxplain viewer" in page.text
        deploy(config)  # both run: nothing restarts
        assert (running_pid(config.torchserve), gateway_pid(config)) == (ts_pid, gw_pid)
        ts_pid = _kill_and_redeploy(config, ts_pid, gw_pid)
        assert {p.name for p in (tmp_path / "run" / "logs").iterdir()} >= {
            "gateway.log",
            "torchserve.log",
        }
    finally:
        stopped = stop(config)
    assert stopped == ["gateway", "torchserve"]
    assert not group_members(ts_pid) and not Path(f"/proc/{gw_pid}").exists()
    assert not config.gateway_pid_file.exists() and not config.torchserve.pid_file.exists()
    assert stop(config) == []
