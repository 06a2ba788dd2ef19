"""A loopback TCP proxy that can be cut and restored: a real backend going down and coming back
without restarting it (fault injection for the live tests)."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["TcpProxy"]


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``stop()`` refuses and drops every connection.
    ``greet_delay_s`` holds back the server's first bytes on each connection (its HTTP/2
    SETTINGS frame): a server slow to answer a new connection, as a busy TorchServe is."""

    def __init__(self, target_host: str, target_port: int, greet_delay_s: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.greet_delay_s = greet_delay_s
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer, self.greet_delay_s)
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float = 0.0
    ) -> None:
        try:
            data = await reader.read(65536)
            await asyncio.sleep(delay_s)  # before the first bytes only
            while data:
                writer.write(data)
                await writer.drain()
                data = await reader.read(65536)
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()
