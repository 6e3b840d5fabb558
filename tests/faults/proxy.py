"""A TCP proxy to a real server that a test can cut and restore: a database outage on demand."""

from __future__ import annotations

import asyncio
import contextlib


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to `target`. `cut()` drops every connection and refuses new
    ones (they are closed at once, as a dead server's would be); `restore()` forwards again.
    `stall()` keeps every connection open but passes nothing on (a server that stopped
    answering: the kernel still acknowledges, nothing comes back) until `restore()`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.open = True
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.transport.abort()
            return
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    await self._flowing.wait()
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        self.open = False
        for w in list(self._writers):
            w.transport.abort()

    def stall(self) -> None:
        self._flowing.clear()

    def restore(self) -> None:
        self.open = True
        self._flowing.set()

    async def close(self) -> None:
        self.cut()
        self._flowing.set()
        # abort() closes the sockets on a later loop iteration: let it happen before the
        # caller blocks the loop (a schema drop waits for the server to see them gone).
        await asyncio.sleep(0.05)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
