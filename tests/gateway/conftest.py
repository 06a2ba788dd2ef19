"""Fixtures for gateway tests: an event loop on a background thread (the gateway and fake
backends run there; tests talk to them with blocking clients, as real clients would)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from services.gateway import Gateway, GatewayConfig, RunningGateway, start_gateway
from services.gateway.catalog import MetadataSource

T = TypeVar("T")


class LoopThread:
    """An asyncio loop running on its own thread; ``run(coro)`` waits for the result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def start_gateway(
        self, config: GatewayConfig, metadata: MetadataSource | None = None
    ) -> RunningGateway:
        async def start() -> RunningGateway:
            return await start_gateway(config, Gateway(config, metadata))

        return self.run(start())


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    try:
        yield thread
    finally:
        thread.close()
