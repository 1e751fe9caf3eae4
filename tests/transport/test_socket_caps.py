"""The per-address socket cap on a live uvicorn: the socket over the cap is told why and
closed, closing one frees a slot, and other addresses are not affected."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from tests.support.processes import start_server
from transport.socket_caps import SocketCapMiddleware
from worldboss_sdk.protocol import CloseCode

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

CAP = 4


@pytest.fixture
def server(live_boss):
    proc, port = start_server(MAX_SOCKETS_PER_ADDRESS=str(CAP))
    try:
        yield port, live_boss
    finally:
        proc.stop()


async def _viewer(port: int, slug: str, local: str = "127.0.0.1"):
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/bosses/{slug}/", local_addr=(local, 0))
    return ws


async def _refused(ws) -> dict:
    frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == CloseCode.RATE_LIMITED
    return frame


async def _served_once_freed(port: int, slug: str, timeout_s: float = 5.0):
    """A viewer that got its hello: the server counts a closed socket out once its ASGI app
    has returned, a moment after the close handshake; until then it refuses with rate_limited."""
    deadline = time.monotonic() + timeout_s
    while True:
        ws = await _viewer(port, slug)
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame["type"] == "hello":
            return ws
        await ws.close()
        assert frame.get("code") == "rate_limited" and time.monotonic() < deadline, frame
        await asyncio.sleep(0.02)


def test_the_socket_over_the_cap_is_refused_and_a_closed_one_frees_a_slot(server):
    port, boss = server

    async def scenario():
        held = [await _viewer(port, boss.slug) for _ in range(CAP)]
        for ws in held:  # each got hello + snapshot: fully served
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "hello"
        over = await _viewer(port, boss.slug)
        frame = await _refused(over)
        assert frame["type"] == "error" and frame["code"] == "rate_limited"
        assert f"at most {CAP}" in frame["detail"]
        # another address is counted apart
        other = await _viewer(port, boss.slug, local="127.0.0.2")
        assert json.loads(await asyncio.wait_for(other.recv(), 5))["type"] == "hello"
        await other.close()
        # the held sockets still work
        await held[0].send(json.dumps({"type": "ping", "id": 9}))
        frames = [json.loads(await asyncio.wait_for(held[0].recv(), 5)) for _ in range(2)]
        assert any(f.get("type") == "pong" and f.get("id") == 9 for f in frames), frames
        await held.pop().close()
        again = await _served_once_freed(port, boss.slug)
        for ws in [*held, again]:
            await ws.close()

    asyncio.run(scenario())


def test_counts_return_to_zero_however_sockets_end():
    """The middleware's count is decremented on a normal end, an exception and a refusal."""
    events: list[str] = []

    async def app(scope, receive, send):
        message = await receive()
        events.append(message["type"])
        if scope["path"] == "/boom":
            raise RuntimeError("consumer fault")

    cap = SocketCapMiddleware(app, max_per_address=1)

    async def run(path: str) -> list[dict]:
        sent: list[dict] = []
        queue: asyncio.Queue = asyncio.Queue()
        await queue.put({"type": "websocket.connect"})

        async def send(message):
            sent.append(message)

        scope = {"type": "websocket", "path": path, "client": ("10.0.0.1", 1)}
        try:
            await cap(scope, queue.get, send)
        except RuntimeError:
            pass
        return sent

    async def scenario():
        assert await run("/ok") == []
        assert await run("/boom") == []
        assert not cap.open_sockets
        # hold one socket open, the second is refused
        gate = asyncio.Event()

        async def holding(scope, receive, send):
            await gate.wait()

        cap.app = holding
        first = asyncio.create_task(run("/hold"))
        await asyncio.sleep(0)
        refused = await run("/second")
        assert [m["type"] for m in refused] == ["websocket.accept", "websocket.send", "websocket.close"]
        assert refused[-1]["code"] == CloseCode.RATE_LIMITED
        gate.set()
        await first
        assert not cap.open_sockets

    asyncio.run(scenario())


def test_the_default_cap_admits_a_one_box_load_test_past_the_old_256(live_boss):
    """With the default, one address holds more sockets on one process than the former cap
    of 256 (a carrier NAT or a load generator: the per-identity limits do the protecting)."""
    from django.conf import settings

    held_count = 300
    assert settings.MAX_SOCKETS_PER_ADDRESS >= 2_000  # a 2,000-viewer load test on one process
    proc, port = start_server()  # the default cap

    async def scenario():
        held = []
        try:
            for _ in range(held_count):
                held.append(await _viewer(port, live_boss.slug))
            for ws in held:
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
        finally:
            await asyncio.gather(*(ws.close() for ws in held), return_exceptions=True)

    try:
        asyncio.run(scenario())
    finally:
        proc.stop()
