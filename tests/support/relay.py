"""A TCP relay between a client and a server that a test can hold or cut, in the test's loop.

    relay = Relay(target_port)
    await relay.start()            # clients connect to relay.port
    relay.hold()                   # server -> client bytes are kept, not forwarded ...
    relay.release()                # ... and arrive at once (a link that was slow, then fast)
    relay.partition()              # nothing flows; connections open now never carry a byte
                                   # again (like TCP backed off past the test), new ones wait
    relay.heal()                   # new connections flow; those cut stay dead
    await relay.close()

Used by the SDK's link-fault tests (tests/sdk/test_link_faults.py). A dead connection keeps
its sockets open until an endpoint gives up on it, as a partition leaves them: no FIN or RST
crosses it.
"""

from __future__ import annotations

import asyncio
import contextlib


class _Link:
    """One client connection and its upstream: two pumps and the state the relay gives them."""

    def __init__(self) -> None:
        self.dead = False
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []


class Relay:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.host = host
        self.port = 0
        self.connections = 0  # accepted client connections
        self._server: asyncio.Server | None = None
        self._links: list[_Link] = []
        self._flowing = asyncio.Event()  # cleared: new links wait (a partition)
        self._flowing.set()
        self._downstream = asyncio.Event()  # cleared: server -> client bytes are held
        self._downstream.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def hold(self) -> None:
        self._downstream.clear()

    def release(self) -> None:
        self._downstream.set()

    def partition(self) -> None:
        for link in self._links:
            link.dead = True
        self._flowing.clear()

    def heal(self) -> None:
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        link = _Link()
        link.writers.append(writer)
        self._links.append(link)
        await self._flowing.wait()  # a connection made during a partition waits for the heal
        if link.dead:
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        link.writers.append(up_writer)
        link.tasks = [
            asyncio.ensure_future(self._pump(link, reader, up_writer, downstream=False)),
            asyncio.ensure_future(self._pump(link, up_reader, writer, downstream=True)),
        ]

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, downstream: bool
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while True:
                data = await reader.read(65536)
                if not data:
                    if not link.dead:  # not even EOF crosses a cut link
                        writer.close()
                    return
                if link.dead:
                    continue  # swallowed, like every packet of a cut link
                if downstream:
                    await self._downstream.wait()
                if link.dead:
                    continue
                writer.write(data)
                await writer.drain()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links:
            for task in link.tasks:
                task.cancel()
            for writer in link.writers:
                writer.close()
        for link in self._links:
            for task in link.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
