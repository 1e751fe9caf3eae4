"""Half-open handshakes are bounded (transport/handshake.py, docs/security.md "Bounds"): a
connection that never finishes its request head gets 408 and is closed after
``HANDSHAKE_TIMEOUT_MS``, and past ``MAX_UNFINISHED_HANDSHAKES`` the oldest waiting one is
closed. Raw TCP sockets against a live uvicorn with the production flags; an open WebSocket
is never touched by either bound."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from websockets.asyncio.client import connect

from tests.support import processes
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120), pytest.mark.process]

HALF_UPGRADE = (
    b"GET /ws/bosses/nobody/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"  # no blank line: the head never ends
)


class Raw:
    """A raw TCP connection and what the server sent on it, read without blocking."""

    def __init__(self, port: int, first: bytes = HALF_UPGRADE) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setblocking(False)
        self.sock.sendall(first)
        self.received = b""
        self.closed = False

    def poll(self) -> bool:
        """Read what arrived; True once the server closed the connection."""
        while not self.closed:
            try:
                chunk = self.sock.recv(4096)
            except BlockingIOError:
                break
            except ConnectionResetError:
                self.closed = True
                break
            if not chunk:
                self.closed = True
            self.received += chunk
        return self.closed

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raws():
    opened: list[Raw] = []
    yield opened
    for raw in opened:
        raw.close()


def test_past_the_cap_the_oldest_unfinished_handshake_is_closed(live_boss, raws):
    server, port = processes.start_server(HANDSHAKE_TIMEOUT_MS="60s", MAX_UNFINISHED_HANDSHAKES="4")
    try:
        raws.extend(Raw(port) for _ in range(6))
        wait_until(lambda: raws[0].poll() and raws[1].poll(), timeout_s=30, what="the two oldest closed")
        for raw in raws[:2]:
            assert raw.received.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), raw.received
        assert not any(raw.poll() for raw in raws[2:])  # the four newest wait, within the cap

        async def real_client() -> dict:
            async with connect(f"ws://127.0.0.1:{port}/ws/bosses/{live_boss.slug}/") as ws:
                return json.loads(await ws.recv())

        assert asyncio.run(real_client())["type"] == "hello"  # a whole handshake is not counted
        raws.append(Raw(port))
        wait_until(raws[2].poll, timeout_s=30, what="the next oldest closed by the seventh")
        assert not any(raw.poll() for raw in raws[3:])
    finally:
        server.stop()


def test_an_unfinished_head_gets_408_after_the_timeout_and_open_websockets_stay(live_boss, raws):
    server, port = processes.start_server(HANDSHAKE_TIMEOUT_MS="1s", MAX_UNFINISHED_HANDSHAKES="0")

    async def run() -> dict:
        async with connect(f"ws://127.0.0.1:{port}/ws/bosses/{live_boss.slug}/") as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            raws.extend(Raw(port) for _ in range(3))
            # a kept-alive connection: one whole request, then half of the next
            keep = Raw(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            raws.append(keep)
            await asyncio.to_thread(
                wait_until, lambda: keep.poll() or b"\r\n\r\n" in keep.received, what="healthz"
            )
            keep.sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            await asyncio.to_thread(
                wait_until,
                lambda: all(r.poll() for r in raws),
                timeout_s=30,
                what="every half-open one closed",
            )
            await ws.send(json.dumps({"type": "ping", "id": 1}))
            while True:  # the WebSocket outlived the deadline: it answers
                frame = json.loads(await ws.recv())
                if frame["type"] == "pong":
                    return frame

    try:
        assert asyncio.run(run())["id"] == 1
        for raw in raws:
            assert b"HTTP/1.1 408 Request Timeout\r\n" in raw.received, raw.received
        assert raws[-1].received.startswith(b"HTTP/1.1 200")  # the kept-alive one's first answer
    finally:
        server.stop()
