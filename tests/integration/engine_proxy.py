"""The local docker engine seen through tcp:// on loopback, as from a worker host that can
vanish: the proxy never passes a client's end on to the engine while it runs, so when a
client dies the engine goes on as if it were still there (a host that lost power, a cut
network), and a build of a killed worker keeps running on the engine. The engine's end of a
connection does reach the client.
"""

from __future__ import annotations

import asyncio
import contextlib


class HalfOpenEngineProxy:
    """``await proxy.start()``; ``proxy.docker_host``; ``await proxy.stop()`` closes all."""

    def __init__(self, socket_path: str = "/var/run/docker.sock") -> None:
        self.socket_path = socket_path
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def docker_host(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def to_engine() -> None:
            # the client's end is not passed on: the engine keeps its connection
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    up_writer.write(data)
                    await up_writer.drain()

        async def to_client() -> None:
            with contextlib.suppress(OSError):
                while data := await up_reader.read(65536):
                    if writer.is_closing():
                        continue  # the client is gone: drain the engine's answer
                    writer.write(data)
                    with contextlib.suppress(OSError):
                        await writer.drain()
            writer.close()  # the engine's end reaches the client

        for pipe in (to_engine(), to_client()):
            task = asyncio.create_task(pipe)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
