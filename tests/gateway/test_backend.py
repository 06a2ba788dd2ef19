"""One backend against a fake TorchServe: retries only for connection failures, the in-flight
bound, deadlines, error mapping and token refresh."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import grpc
import pytest

from ptxplain.errors import Code, OverloadedError
from services.gateway.backend import Backend, encode_predictions_request
from services.gateway.config import BackendConfig
from tests.gateway.conftest import LoopThread
from tests.gateway.fakes import FakeModel, FakeTorchServe, png_bytes
from tests.gateway.proxy import TcpProxy

SHARED = encode_predictions_request({"data": png_bytes()})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def backend_for(target: str, **kw: object) -> Backend:
    return Backend(BackendConfig(name="b", grpc=target, management="http://127.0.0.1:9", **kw))  # type: ignore[arg-type]


def test_connection_failure_is_retried_until_the_backend_is_up(loop_thread: LoopThread) -> None:
    port = free_port()
    fake = FakeTorchServe({"m": FakeModel()})

    async def scenario() -> tuple[int, bytes | None]:
        backend = backend_for(f"127.0.0.1:{port}", connect_retries=6)
        starter = asyncio.get_running_loop().call_later(
            0.15, lambda: asyncio.ensure_future(fake.start(port))
        )
        try:
            reply = await backend.predict("m", SHARED, timeout_s=10)
        finally:
            starter.cancel()
            await backend.close()
            await fake.stop()
        assert reply.error is None, reply.error
        return reply.attempts, reply.raw

    attempts, raw = loop_thread.run(scenario())
    assert attempts > 1 and raw


def test_a_torchserve_slow_to_greet_a_new_connection_still_gets_the_call(
    loop_thread: LoopThread,
) -> None:
    """A busy TorchServe (2 cores loading models or running a batch) can take a while to send
    the HTTP/2 SETTINGS frame of a new connection. gRPC core uses
    ``grpc.min_reconnect_backoff_ms`` as the minimum connect timeout, so a small value there
    failed every connection attempt ("timed out before receiving SETTINGS frame")."""
    fake = FakeTorchServe({"m": FakeModel()})

    async def scenario() -> tuple[int, bytes | None]:
        upstream = await fake.start(0)
        proxy = TcpProxy("127.0.0.1", upstream, greet_delay_s=0.6)
        port = await proxy.start()
        backend = backend_for(f"127.0.0.1:{port}", connect_retries=2)
        try:
            reply = await backend.predict("m", SHARED, timeout_s=10)
        finally:
            await backend.close()
            await proxy.stop()
            await fake.stop()
        assert reply.error is None, reply.error
        return reply.attempts, reply.raw

    attempts, raw = loop_thread.run(scenario())
    assert attempts == 1 and raw


def test_down_backend_fails_after_bounded_retries(loop_thread: LoopThread) -> None:
    async def scenario() -> tuple[int, Code]:
        backend = backend_for(f"127.0.0.1:{free_port()}", connect_retries=2)
        reply = await backend.predict("m", SHARED, timeout_s=5)
        await backend.close()
        assert reply.error is not None
        return reply.attempts, reply.error.code

    assert loop_thread.run(scenario()) == (3, Code.UNAVAILABLE)


@pytest.mark.parametrize(
    ("model", "code"),
    [
        (
            FakeModel(grpc_error=grpc.StatusCode.UNAVAILABLE, grpc_details="Prediction failed"),
            Code.UNAVAILABLE,
        ),
        (
            FakeModel(grpc_error=grpc.StatusCode.INTERNAL, grpc_details="Worker died."),
            Code.UNAVAILABLE,
        ),
        (FakeModel(delay_s=2.0), Code.DEADLINE_EXCEEDED),
    ],
)
def test_failures_after_reaching_torchserve_are_not_retried(
    loop_thread: LoopThread, model: FakeModel, code: Code
) -> None:
    async def scenario() -> tuple[int, Code, int]:
        async with FakeTorchServe({"m": model}) as fake:
            backend = backend_for(fake.target, connect_retries=3)
            reply = await backend.predict("m", SHARED, timeout_s=0.3)
            await backend.close()
            assert reply.error is not None
            return reply.attempts, reply.error.code, len(fake.calls)

    assert loop_thread.run(scenario()) == (1, code, 1)


def test_unknown_model_on_torchserve_is_named(loop_thread: LoopThread) -> None:
    async def scenario() -> str:
        async with FakeTorchServe({}) as fake:
            backend = backend_for(fake.target)
            reply = await backend.predict("ghost", SHARED, timeout_s=2)
            await backend.close()
            assert reply.error is not None and reply.error.code == Code.INVALID_ARGUMENT
            return str(reply.error)

    assert "ghost" in loop_thread.run(scenario())


def test_in_flight_bound_refuses_at_once() -> None:
    backend = backend_for("127.0.0.1:1", max_in_flight=2)
    with backend.slot("m"), backend.slot("m"):
        with pytest.raises(OverloadedError, match="bound 2") as info, backend.slot("m"):
            pass
        assert info.value.http_status == 429
    assert backend.in_flight == 0


def test_expired_key_is_refreshed_from_the_key_file(
    loop_thread: LoopThread, tmp_path: Path
) -> None:
    key_file = tmp_path / "key_file.json"

    def write_keys(inference: str) -> None:
        entry = {"key": inference, "expiration time": "2030-01-01T00:00:00Z"}
        key_file.write_text(
            json.dumps({"inference": entry, "management": entry, "API": {"key": "api"}})
        )

    async def scenario() -> list[str | None]:
        async with FakeTorchServe({"m": FakeModel()}, token="k1") as fake:
            write_keys("k1")
            backend = backend_for(fake.target, key_file=key_file)
            first = await backend.predict("m", SHARED, timeout_s=5)
            channel = backend._channel
            fake.token = "k2"  # TorchServe issued a new key (the old one expired)
            write_keys("k2")
            second = await backend.predict("m", SHARED, timeout_s=5)
            assert backend._channel is channel is not None  # one channel, reused
            await backend.close()
            assert first.error is None and second.error is None, (first.error, second.error)
            return [call[2].get("authorization") for call in fake.calls]

    assert loop_thread.run(scenario()) == ["Bearer k1", "Bearer k1", "Bearer k2"]
