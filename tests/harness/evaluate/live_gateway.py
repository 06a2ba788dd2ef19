"""A real gateway in front of a real TorchServe, on free ports, for end-to-end tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from services.gateway import GatewayConfig, RunningGateway, start_gateway
from services.gateway.config import BackendConfig
from services.torchserve import TorchServeConfig

__all__ = ["gateway_for"]


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextmanager
def gateway_for(ts: TorchServeConfig) -> Iterator[RunningGateway]:
    """A gateway (gRPC and HTTP on port 0) routing to every model of the TorchServe ``ts``."""
    backend = BackendConfig(
        name="local",
        grpc=ts.grpc_inference_target,
        management=ts.management_url,
        key_file=ts.key_file,
    )
    config = GatewayConfig(backends=(backend,), grpc_port=0, http_port=0, json_logs=False)
    loop = _Loop()
    running = loop.run(start_gateway(config))
    try:
        yield running
    finally:
        loop.run(running.stop(0.5))
        loop.close()
