"""Server lifecycle: create_server on port 0, graceful stop, taken ports, client auth over gRPC,
and the `ptxplain gateway` process stopping cleanly on SIGTERM."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest
import requests
import yaml

from ptxplain.errors import ConfigError
from services.gateway import ExplainerClient, Gateway, TlsConfig, create_server
from services.gateway.runner import HttpServer
from services.stack import gateway_command
from tests.gateway.conftest import LoopThread
from tests.gateway.fakes import FakeMetadata, FakeModel, FakeTorchServe, gateway_config, png_bytes


def test_graceful_stop_lets_calls_in_flight_finish(loop_thread: LoopThread) -> None:
    fake = FakeTorchServe({"slow": FakeModel(delay_s=0.6)})
    loop_thread.run(fake.start())
    config = gateway_config({"b": (fake.target, ("slow",))})
    running = loop_thread.start_gateway(config, FakeMetadata())
    results: list[object] = []
    with ExplainerClient(f"127.0.0.1:{running.grpc_port}") as client:
        caller = threading.Thread(target=lambda: results.append(client.explain(png_bytes())[0]))
        caller.start()
        time.sleep(0.2)
        loop_thread.run(running.stop(grace_s=5))
        caller.join()
        with pytest.raises(grpc.RpcError):
            client.explain(png_bytes(), timeout_s=1)
    loop_thread.run(fake.stop())
    assert len(results) == 1 and results[0].results[0].status.code == 0  # type: ignore[attr-defined]


def test_taken_ports_are_clear_errors(loop_thread: LoopThread) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = gateway_config({"b": ("127.0.0.1:1", ("m",))}, grpc_port=port, http_port=port)

        async def bind_grpc() -> None:
            create_server(config, Gateway(config, FakeMetadata()))

        with pytest.raises(ConfigError, match=f"gRPC port 127.0.0.1:{port}"):
            loop_thread.run(bind_grpc())
        with pytest.raises(ConfigError, match=f"HTTP port 127.0.0.1:{port}"):
            HttpServer(Gateway(config, FakeMetadata()))


def test_client_token_is_required_over_grpc_except_for_health(loop_thread: LoopThread) -> None:
    fake = FakeTorchServe({"m": FakeModel()})
    loop_thread.run(fake.start())
    config = gateway_config({"b": (fake.target, ("m",))}, client_token="t0k", http_port=None)
    running = loop_thread.start_gateway(config, FakeMetadata())
    target = f"127.0.0.1:{running.grpc_port}"
    try:
        with ExplainerClient(target) as anonymous:
            assert anonymous.health() == "SERVING"
            with pytest.raises(grpc.RpcError) as info:
                anonymous.explain(png_bytes())
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with ExplainerClient(target, token="wrong") as wrong, pytest.raises(grpc.RpcError):
            wrong.list_models()
        with ExplainerClient(target, token="t0k") as client:
            assert client.explain(png_bytes())[0].results[0].status.code == 0
    finally:
        loop_thread.run(running.stop(0))
        loop_thread.run(fake.stop())


def test_gateway_process_stops_on_sigterm(tmp_path: Path) -> None:
    config = {
        "grpc_port": 0,
        "http_port": 0,
        "grace_s": 1,
        "backends": [
            {
                "name": "b",
                "grpc": "127.0.0.1:1",
                "management": "http://127.0.0.1:1",
                "models": ["m"],
            }
        ],
    }
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config))
    command = gateway_command(tmp_path / "gateway.yaml")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ports = json.loads(process.stdout.readline())["serving"]
        with ExplainerClient(f"127.0.0.1:{ports['grpc']}") as client:
            assert client.health() == "NOT_SERVING"  # its one model is unreachable
            assert client.list_models()[0].detail
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    logs = [json.loads(line) for line in process.stderr.read().splitlines() if line.startswith("{")]  # type: ignore[union-attr]
    assert any(entry["message"].startswith("stopping") for entry in logs)


def self_signed(folder: Path) -> TlsConfig:
    if shutil.which("openssl") is None:
        pytest.skip("this machine has no openssl command to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return TlsConfig(cert=cert, key=key)


def test_tls_serves_grpc_and_https(loop_thread: LoopThread, tmp_path: Path) -> None:
    tls = self_signed(tmp_path)
    fake = FakeTorchServe({"m": FakeModel()})
    loop_thread.run(fake.start())
    config = gateway_config({"b": (fake.target, ("m",))}, tls=tls)
    running = loop_thread.start_gateway(config, FakeMetadata())
    try:
        ca = tls.cert.read_bytes()
        with ExplainerClient(f"localhost:{running.grpc_port}", root_certificates=ca) as client:
            assert client.explain(png_bytes())[0].results[0].status.code == 0
        with (
            ExplainerClient(f"localhost:{running.grpc_port}") as plain,
            pytest.raises(grpc.RpcError),
        ):
            plain.list_models(timeout_s=2)
        answer = requests.get(
            f"https://127.0.0.1:{running.http_port}/healthz", verify=str(tls.cert), timeout=5
        )
        assert answer.json() == {"status": "ok"}
    finally:
        loop_thread.run(running.stop(0))
        loop_thread.run(fake.stop())


def test_http_connections_send_without_nagle(loop_thread: LoopThread) -> None:
    """Every accepted HTTP connection has TCP_NODELAY: with Nagle on, each response on a
    kept-alive connection held its body back until the client's delayed ACK (~40 ms)."""
    fake = FakeTorchServe({"m": FakeModel()})
    loop_thread.run(fake.start())
    config = gateway_config({"b": (fake.target, ("m",))})
    running = loop_thread.start_gateway(config, FakeMetadata())
    assert running.http is not None
    try:
        with requests.Session() as session:
            for _ in range(3):  # one kept-alive connection
                assert session.get(f"http://127.0.0.1:{running.http_port}/healthz").ok

            async def nodelay() -> list[int]:
                connections = running.http._server.server_state.connections  # type: ignore[union-attr]
                return [
                    c.transport.get_extra_info("socket").getsockopt(
                        socket.IPPROTO_TCP, socket.TCP_NODELAY
                    )
                    for c in connections
                ]

            flags = loop_thread.run(nodelay())
        assert flags and all(flags), flags
    finally:
        loop_thread.run(running.stop(0))
        loop_thread.run(fake.stop())
