"""Run the gateway: the gRPC server and its HTTP twin in one event loop, on one core.

SIGTERM / SIGINT -> health NOT_SERVING, then a graceful stop: both servers stop taking new
calls, calls in flight get ``grace_s`` to finish, then the backend channels close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
from collections.abc import Callable, Iterator

import grpc
import uvicorn

from ptxplain.errors import ConfigError
from services.gateway.config import GatewayConfig
from services.gateway.fanout import Gateway
from services.gateway.grpc_service import create_server
from services.gateway.http_app import create_http_app
from services.gateway.http_guard import guarded_protocol

__all__ = ["HttpServer", "RunningGateway", "serve", "start_gateway"]

log = logging.getLogger(__name__)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the gateway's runner owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle off (TCP_NODELAY) only on accepted sockets
    # whose protocol reads IPPROTO_TCP. With 0, every response on a kept-alive connection waited
    # ~40 ms (its body held back until the client's delayed ACK of the head).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot bind the gateway's HTTP port {host}:{port}: {exc.strerror} (in use?)"
        ) from exc
    sock.listen(512)
    sock.setblocking(False)
    return sock


class HttpServer:
    """uvicorn serving the HTTP twin on a socket bound up front (so port 0 works)."""

    def __init__(self, gateway: Gateway) -> None:
        config = gateway.config
        assert config.http_port is not None
        self._socket = _listen(config.host, config.http_port)
        self.port: int = self._socket.getsockname()[1]
        tls, limits = config.tls, config.http_limits
        self._server = _EmbeddedUvicorn(
            uvicorn.Config(
                create_http_app(gateway),
                log_config=None,
                access_log=False,
                lifespan="off",
                http=guarded_protocol(limits.header_timeout_s),
                timeout_keep_alive=limits.keep_alive_s,
                limit_concurrency=limits.max_connections,
                h11_max_incomplete_event_size=64 * 1024,  # request head
                timeout_graceful_shutdown=int(config.grace_s),
                ssl_certfile=str(tls.cert) if tls else None,
                ssl_keyfile=str(tls.key) if tls else None,
            )
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise ConfigError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self, grace_s: float) -> None:
        """Stop taking requests; those in flight get ``grace_s`` seconds."""
        self._server.config.timeout_graceful_shutdown = math.ceil(grace_s)
        self._server.force_exit = grace_s <= 0  # no grace: do not wait for open connections
        self._server.should_exit = True
        if self._task is not None:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=grace_s + 5.0)
        self._socket.close()


class RunningGateway:
    """A started gateway: its core, gRPC server (and port) and HTTP server (and port)."""

    def __init__(
        self,
        gateway: Gateway,
        grpc_server: grpc.aio.Server,
        grpc_port: int,
        http: HttpServer | None,
    ) -> None:
        self.gateway = gateway
        self.grpc_server = grpc_server
        self.grpc_port = grpc_port
        self.http = http

    @property
    def http_port(self) -> int | None:
        return self.http.port if self.http else None

    async def stop(self, grace_s: float | None = None) -> None:
        grace = self.gateway.config.grace_s if grace_s is None else grace_s
        await self.gateway.drain()
        stops = [self.grpc_server.stop(grace)]
        if self.http is not None:
            stops.append(self.http.stop(grace))
        await asyncio.gather(*stops)
        await self.gateway.close()


async def start_gateway(config: GatewayConfig, gateway: Gateway | None = None) -> RunningGateway:
    """Start the core (first catalog refresh), the gRPC server and the HTTP twin."""
    gateway = gateway or Gateway(config)
    server, port = create_server(config, gateway)
    http = HttpServer(gateway) if config.http_port is not None else None
    await gateway.start()
    await server.start()
    if http is not None:
        await http.start()
    return RunningGateway(gateway, server, port, http)


async def serve(
    config: GatewayConfig, on_ready: Callable[[RunningGateway], None] | None = None
) -> None:
    """Run until SIGTERM / SIGINT, then stop gracefully."""
    running = await start_gateway(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "gateway serving",
        extra={
            "fields": {
                "grpc_port": running.grpc_port,
                "http_port": running.http_port,
                "models": running.gateway.catalog.ready_models(),
            }
        },
    )
    if on_ready is not None:
        on_ready(running)
    await stop.wait()
    log.info("stopping (grace %.1fs)", config.grace_s)
    await running.stop()
