"""The gateway against hostile clients, one layer faked (TorchServe): unparseable gRPC requests,
unbounded echoes, a dead worker, cancelled calls that keep their slots, health that follows what
calls observe, and the HTTP twin's Host / Origin checks, strict query, 405 and server limits."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ptxplain.v1 import explainer_pb2 as epb
from ptxplain.v1 import explainer_pb2_grpc
from services.gateway import ExplainerClient, RunningGateway
from services.gateway.config import HttpLimits
from tests.conftest import wait_until
from tests.gateway.conftest import LoopThread
from tests.gateway.fakes import FakeMetadata, FakeModel, FakeTorchServe, gateway_config, png_bytes

MODELS = {
    "fast": FakeModel(),
    "slow": FakeModel(delay_s=1.0),
    "dying": FakeModel(grpc_error=grpc.StatusCode.RESOURCE_EXHAUSTED, grpc_details="Worker died."),
}


@pytest.fixture(scope="module")
def fake(loop_thread: LoopThread) -> Iterator[FakeTorchServe]:
    server = FakeTorchServe(MODELS)
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop())


@pytest.fixture(scope="module")
def gateway(loop_thread: LoopThread, fake: FakeTorchServe) -> Iterator[RunningGateway]:
    config = gateway_config(
        {"main": (fake.target, tuple(MODELS))},
        backend_overrides={"main": {"max_sent_per_model": 1}},
        http_limits=HttpLimits(header_timeout_s=0.5, body_timeout_s=0.5),
        allowed_origins=("http://viewer.example:8080",),
    )
    running = loop_thread.start_gateway(config, FakeMetadata())
    yield running
    loop_thread.run(running.stop(0))


@pytest.fixture(scope="module")
def client(gateway: RunningGateway) -> Iterator[ExplainerClient]:
    with ExplainerClient(f"127.0.0.1:{gateway.grpc_port}") as c:
        yield c


def raw_call(gateway: RunningGateway, body: bytes) -> grpc.RpcError:
    with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        method = channel.unary_unary("/ptxplain.v1.Explainer/Explain")
        with pytest.raises(grpc.RpcError) as info:
            method(body, timeout=10)
    return info.value


@pytest.mark.parametrize(
    "body", [b"\xff" * 8, b"\x12\x02\xff\xfe", b"\x1a\x03\x0a\x01\xff", b"\x0a\x10short"]
)
def test_bytes_that_are_no_request_are_invalid_argument(
    gateway: RunningGateway, body: bytes
) -> None:
    error = raw_call(gateway, body)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ptxplain.v1.ExplainRequest" in (error.details() or "")


def test_a_64_kib_model_name_is_echoed_bounded(client: ExplainerClient) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.explain(png_bytes(), ["é" * 65536])
    details = info.value.details() or ""
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details.isascii() and len(details) <= 1024 and "65536 characters" in details


def test_methods_naming_none_is_an_error_on_both_apis(
    client: ExplainerClient, gateway: RunningGateway
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.explain(png_bytes(), ["fast"], epb.ExplainOptions(methods=[",,,"]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    answer = requests.post(
        f"http://127.0.0.1:{gateway.http_port}/v1/explain?models=fast&methods=,,,",
        data=png_bytes(),
        timeout=10,
    )
    assert answer.status_code == 400 and "names no CAM method" in answer.json()["error"]["message"]


def test_a_dead_worker_is_unavailable_not_overload(client: ExplainerClient) -> None:
    response, _ = client.explain(png_bytes(), ["fast", "dying"])
    dying = {r.model: r for r in response.results}["dying"]
    assert dying.status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert dying.status.http_status == 503 and "worker died" in dying.status.message


def test_a_cancelled_call_keeps_its_slot_until_torchserve_answers(
    gateway: RunningGateway, fake: FakeTorchServe
) -> None:
    backend = gateway.gateway.backends[0]
    stub = explainer_pb2_grpc.ExplainerStub(grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}"))
    request = epb.ExplainRequest(image=png_bytes(), models=["slow"])
    sent_before = sum(1 for call in fake.calls if call[0] == "slow")
    first = stub.ExplainStream(request, timeout=30)
    wait_until(lambda: backend.gate("slow").sent == 1, 10, "the first call sent")
    queued = stub.ExplainStream(request, timeout=30)  # waits at the gate (one call per model)
    wait_until(lambda: backend.gate("slow").waiting == 1, 10, "the second call queued")
    first.cancel()
    queued.cancel()
    wait_until(lambda: backend.lingering == 1 and backend.in_flight == 1, 5, "the cancels seen")
    assert (backend.in_flight, backend.lingering) == (1, 1)  # TorchServe still runs the first
    wait_until(lambda: backend.in_flight == 0, 10, "the first call answered")
    assert (backend.in_flight, backend.lingering, backend.gate("slow").sent) == (0, 0, 0)
    assert sum(1 for call in fake.calls if call[0] == "slow") == sent_before + 1  # not the queued


def test_health_follows_what_calls_observe(
    loop_thread: LoopThread, gateway: RunningGateway, fake: FakeTorchServe
) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}")
    health = health_pb2_grpc.HealthStub(channel)

    def status() -> int:
        return int(health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status)

    assert status() == health_pb2.HealthCheckResponse.SERVING
    loop_thread.run(fake.stop())
    try:
        with ExplainerClient(f"127.0.0.1:{gateway.grpc_port}") as c, pytest.raises(grpc.RpcError):
            c.explain(png_bytes(), ["fast"], timeout_s=5)
        # the catalog refreshes every 60 s here: the call itself turned health off
        assert status() == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        loop_thread.run(fake.start())
        loop_thread.run(gateway.gateway.refresh())
    assert status() == health_pb2.HealthCheckResponse.SERVING
    channel.close()


# -- the HTTP twin -------------------------------------------------------------------------------


def http(gateway: RunningGateway) -> str:
    return f"http://127.0.0.1:{gateway.http_port}"


def post(gateway: RunningGateway, query: str = "?models=fast", **headers: str) -> requests.Response:
    return requests.post(
        f"{http(gateway)}/v1/explain{query}", data=png_bytes(), headers=headers, timeout=10
    )


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 200),
        ({"Host": "localhost"}, 200),
        ({"Host": "[::1]:8000"}, 200),
        ({"Host": "attacker.example"}, 403),
        ({"Host": "127.0.0.1.attacker.example"}, 403),
        ({"Origin": "http://attacker.example", "Content-Type": "text/plain"}, 403),
        ({"Origin": "null"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Origin": "http://viewer.example:8080"}, 200),
    ],
)
def test_host_and_origin_checks(
    gateway: RunningGateway, headers: dict[str, str], status: int
) -> None:
    answer = post(gateway, **headers)
    assert answer.status_code == status, answer.text
    if status == 403:
        assert answer.json()["error"]["code"] == "PERMISSION_DENIED"


def test_a_page_of_the_same_origin_may_post(gateway: RunningGateway) -> None:
    assert post(gateway, Origin=http(gateway)).status_code == 200


def test_the_guard_covers_every_route(gateway: RunningGateway) -> None:
    for path in ("/healthz", "/v1/models", "/no/such/route"):
        answer = requests.get(f"{http(gateway)}{path}", headers={"Host": "evil"}, timeout=10)
        assert answer.status_code == 403, path


def test_unknown_query_keys_are_an_error(gateway: RunningGateway) -> None:
    answer = post(gateway, "?models=fast&method=hirescam")
    assert answer.status_code == 400 and "method" in answer.json()["error"]["message"]


def test_405_names_the_allowed_methods(gateway: RunningGateway) -> None:
    answer = requests.get(f"{http(gateway)}/v1/explain", timeout=10)
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"


def test_a_slow_request_head_is_closed(gateway: RunningGateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.http_port), timeout=5) as sock:
        sock.sendall(b"POST /v1/explain HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server
        assert time.monotonic() - started < 3


def test_a_stalled_body_gets_408(gateway: RunningGateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.http_port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/explain?models=fast HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: image/png\r\nContent-Length: 1000\r\n\r\n\x89PNG"
        )
        answer = sock.recv(1000)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]


def test_an_unknown_query_key_of_60_kib_is_echoed_bounded(gateway: RunningGateway) -> None:
    answer = post(gateway, f"?models=fast&{'k' * 60_000}=1")
    message = answer.json()["error"]["message"]
    assert answer.status_code == 400 and len(message) <= 1024 and message.isascii()
