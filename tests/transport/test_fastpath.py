"""The uvicorn fast path (transport/fastpath.py) under the production server flags.

The server is a real uvicorn (``uvicorn.Config`` + ``uvicorn.Server``, its own uvloop event
loop, in a thread of the test process) serving the platform's ASGI application with the
flags of transport/hub.py ``UVICORN_WS_ARGS``, parsed by uvicorn's own command line. Because
it runs in this process, the test reads the adapter's per-process counters
(``FASTPATH_STATS``), which nothing exposes to the network, and so fails if any frame of the
viewer or the game server went any other way than the fast path.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from asgiref.sync import sync_to_async
from click.core import ParameterSource
from websockets.asyncio.client import ClientConnection, connect

from bosses.services import boss_tick
from shards.services import adelta_ingest, shard_create
from transport import fastpath
from transport.fastpath import FASTPATH_STATS, text_frame, writer_for
from transport.hub import UVICORN_WS_ARGS, Subscriber
from worldboss_sdk.protocol import PROTOCOL_VERSION

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
APP = "liveops.asgi:application"
HITS = 5
HIT = 1_000  # far from the first phase threshold: each tick publishes exactly one message


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(port: int, extra_args: list[str]) -> uvicorn.Config:
    """The uvicorn configuration the production command line gives, plus ``extra_args``."""
    argv = [APP, "--host", "127.0.0.1", "--port", str(port), *UVICORN_WS_ARGS, *extra_args]
    ctx = uvicorn.main.make_context("uvicorn", argv)
    given = {
        name: value
        for name, value in ctx.params.items()
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }
    assert {"ws", "ws_per_message_deflate", "ws_max_size", "http", "loop"} <= set(given)
    # log_config=None: leave the test process's logging alone (it is not a WebSocket setting)
    return uvicorn.Config(**given, log_config=None)


@pytest.fixture
def serve() -> Iterator[Callable[..., int]]:
    """Start uvicorn in this process with the production flags (and ``extra_args``); returns
    its port once it accepts connections. Every server is stopped at the end of the test."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(*extra_args: str) -> int:
        port = _free_port()
        server = uvicorn.Server(_config(port, list(extra_args)))
        # Server.run builds the configured loop (uvloop) as the uvicorn command does.
        thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return port

    yield start
    for server, _ in running:
        server.should_exit = True
    for _, thread in running:
        thread.join(timeout=30)


async def _recv(ws: ClientConnection) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout=10))


async def _watch(port: int, slug: str) -> tuple[ClientConnection, dict]:
    """A viewer on /ws/bosses/<slug>/ (offering per-message deflate, as browsers do)."""
    ws = await connect(f"ws://127.0.0.1:{port}/ws/bosses/{slug}/")
    hello = await _recv(ws)
    assert hello["type"] == "hello" and hello["v"] == PROTOCOL_VERSION and hello["boss"] == slug
    snapshot = await _recv(ws)
    assert snapshot["type"] == "state"
    return ws, snapshot


def _delta(before: dict[str, int]) -> dict[str, int]:
    return {name: value - before[name] for name, value in FASTPATH_STATS.snapshot().items()}


async def test_viewer_and_game_server_frames_all_take_the_fast_path(live_boss, serve):
    port = serve()
    before = FASTPATH_STATS.snapshot()
    _, token = await sync_to_async(shard_create)(key="fast-1", name="Fast 1")

    viewer, snapshot = await _watch(port, live_boss.slug)
    assert viewer.protocol.extensions == []  # deflate offered, refused by the server flags
    viewer_frames = [snapshot]

    game = await connect(
        f"ws://127.0.0.1:{port}/ws/shards/fast-1/", additional_headers={"Authorization": f"Bearer {token}"}
    )
    welcome = await _recv(game)
    assert welcome["type"] == "welcome" and welcome["role"] == "server"
    game_frames = [welcome]

    for seq in range(1, HITS + 1):
        await game.send(json.dumps({"type": "damage", "boss": live_boss.slug, "seq": seq, "amount": HIT}))
        ack = await _recv(game)
        assert ack == {"type": "ack", "boss": live_boss.slug, "seq": seq, "duplicate": False}
        game_frames.append(ack)
        out = await sync_to_async(boss_tick)(boss_id=live_boss.pk, force=True)
        state = await _recv(viewer)
        assert (state["type"], state["version"], state["hp"]) == ("state", out.version, out.hp)
        viewer_frames.append(state)
    assert viewer_frames[-1]["hp"] == live_boss.max_hp - HITS * HIT
    versions = [frame["version"] for frame in viewer_frames]
    assert versions == sorted(set(versions))

    # Every frame after the viewer's hello (the snapshot and each published state, written by
    # the hub) and every frame of the game server was written by the fast path; none fell back.
    assert _delta(before) == {
        "writers": 2,
        "no_writer": 0,
        "fast_sends": len(viewer_frames) + len(game_frames),
        "fallbacks": 0,
    }
    await viewer.close()
    await game.close()


async def test_a_negotiated_extension_falls_back_to_the_asgi_send_and_is_counted(
    live_boss, make_session, serve
):
    # The same server with per-message deflate on: the viewer negotiates it, so a frame built
    # once for every socket cannot be written to this one; it gets the ordinary send.
    port = serve("--ws-per-message-deflate", "true")
    before = FASTPATH_STATS.snapshot()
    viewer, snapshot = await _watch(port, live_boss.slug)
    assert [ext.name for ext in viewer.protocol.extensions] == ["permessage-deflate"]
    session = await sync_to_async(make_session)()
    for seq in range(1, 4):
        await adelta_ingest(
            boss_id=live_boss.pk, shard_key=session.shard_key, epoch=session.epoch, seq=seq, amount=HIT
        )
        out = await sync_to_async(boss_tick)(boss_id=live_boss.pk, force=True)
        state = await _recv(viewer)
        assert (state["version"], state["hp"]) == (out.version, out.hp)
    assert snapshot["version"] < state["version"]
    assert _delta(before) == {"writers": 0, "no_writer": 1, "fast_sends": 0, "fallbacks": 0}
    await viewer.close()


async def test_an_unrecognised_send_gets_no_writer_and_the_subscriber_uses_send():
    before = FASTPATH_STATS.snapshot()
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    class Wrapper:  # shaped like Channels' session wrapper, around something that is not uvicorn
        def __init__(self, inner: Callable) -> None:
            self.real_send = inner

        async def send(self, message: dict) -> None:
            await self.real_send(message)

    for unknown in (send, Wrapper(send).send, Wrapper(Wrapper(send).send).send, object(), None):
        assert writer_for(unknown) is None
    sub = Subscriber(send, writer_for(send))
    sub.offer('{"type":"state","version":3}', version=3, is_state=True)
    assert sent == ['{"type":"state","version":3}'] and sub.sent == 1
    assert _delta(before) == {"writers": 0, "no_writer": 6, "fast_sends": 0, "fallbacks": 0}


def test_text_frame_lengths_use_the_three_rfc_6455_encodings():
    for size, header in ((125, bytes((0x81, 125))), (126, bytes((0x81, 126, 0, 126)))):
        assert text_frame("x" * size) == header + b"x" * size
    big = text_frame("x" * 70_000)
    assert big[:2] == bytes((0x81, 127)) and int.from_bytes(big[2:10], "big") == 70_000


def test_the_pin_in_pyproject_is_the_range_the_fast_path_was_tested_with():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [dep for dep in deps if re.match(r"uvicorn\b", dep)]
    low = re.search(r">=\s*(\d+)\.(\d+)", pin)
    high = re.search(r"<\s*(\d+)\.(\d+)", pin)
    assert low and high, f"uvicorn must be pinned to a tested range, got {pin!r}"
    pinned = ((int(low[1]), int(low[2])), (int(high[1]), int(high[2])))
    assert pinned == fastpath.TESTED_UVICORN
    assert fastpath.is_supported()  # the installed uvicorn is in that range
