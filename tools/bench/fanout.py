"""Fan-out measurement: N viewers at H states/s over real sockets, three designs side by side.

Layers (``LAYERS``):

- ``core``: stock Channels, ``RedisChannelLayer`` groups (tools/bench/baseline_asgi.py), stock
  uvicorn flags (per-message deflate on; the client offers it, as browsers do);
- ``pubsub``: the same with ``RedisPubSubChannelLayer``;
- ``hub``: this project's design: ``/ws/bosses/<slug>/`` (transport/consumers/state.py) on the
  per-process hub (transport/hub.py), uvicorn with ``UVICORN_WS_ARGS`` and ``workers``
  processes.

Each run starts real uvicorn server(s), connects ``viewers`` WebSocket clients from THIS
process (a lean asyncio client: frames are parsed by hand and only ``version`` and ``ts`` are
read out of each message, no ``json.loads``), publishes ``hz`` states per second for
``seconds`` (each stamped with its publish time ``ts``, in ms), waits up to ``drain_s`` for
the last one, and reports delivered / expected, lag percentiles (receipt minus ``ts``, over
delivered messages) and whether every viewer ended on the final version.

API::

    from tools.bench.fanout import run_fanout, bench_rows
    result = run_fanout(layer="hub", viewers=2000, hz=10, seconds=10)   # -> FanoutResult
    report = bench_rows(quick=False, seconds=10, viewers=[500, 1000, 2000])  # manage.py bench

Needs Django set up with a migrated database (the hub consumer looks the boss up) and
``settings.REDIS_URL`` / ``settings.CHANNELS_URL`` on a Redis the servers can reach.
``python -m tools.bench.fanout`` does that itself (temporary SQLite file, Redis dbs 13-15).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.bench.harness import group_cpu_seconds, group_rss_kib, run_loop, summarize_ms

if TYPE_CHECKING:
    from tools.stack import ManagedProcess

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("core", "pubsub", "hub")
# Not in the default run: the pubsub layer with the hub's server flags and process count,
# to separate what the flags give from what the design gives.
EXTRA_LAYERS = ("pubsub-tuned",)
CONNECT_CONCURRENCY = 100
CONNECT_TIMEOUT_S = 60.0
DRAIN_S = 5.0
STOCK_WORKERS = 1
HUB_WORKERS = 2


@dataclass
class FanoutResult:
    """One run's figures (``as_row`` is the manage.py bench row)."""

    layer: str
    viewers: int
    hz: float
    seconds: float
    workers: int
    connected: int = 0
    published: int = 0
    expected: int = 0
    delivered: int = 0
    final_version: int = 0
    ended_on_final: int = 0
    p50_lag_ms: float | None = None
    p99_lag_ms: float | None = None
    max_lag_ms: float | None = None
    server_cpu_s: float | None = None
    client_cpu_s: float | None = None
    drain_s: float = 0.0
    subscribed_s: float | None = None  # hub: connects until every viewer had its snapshot
    # the servers' resident memory grown by the held sockets, per socket (KiB; after every
    # viewer connected and, for the hub, had its snapshot; before any state is published)
    rss_per_socket_kib: float | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def delivered_ratio(self) -> float:
        return self.delivered / self.expected if self.expected else 0.0

    @property
    def final_version_ok(self) -> bool:
        return self.connected == self.viewers and self.ended_on_final == self.viewers

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row.update(delivered_pct=round(100 * self.delivered_ratio, 2), final_version_ok=self.final_version_ok)
        return row


# --- lean WebSocket client ----------------------------------------------------------------


class _Viewer(asyncio.Protocol):
    """A WebSocket client that only extracts ``version`` and ``ts`` of each text frame."""

    __slots__ = (
        "buf",
        "close_code",
        "closed",
        "deflate_offered",
        "first_version",
        "frames",
        "handshake",
        "inflate",
        "ready",
        "sink",
        "transport",
        "version",
    )

    def __init__(self, sink: _Sink, deflate: bool) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.handshake = True
        self.ready = asyncio.get_running_loop().create_future()
        self.closed = False
        self.version = -1
        self.first_version = -1
        self.close_code: int | None = None
        self.frames = 0
        self.sink = sink
        self.deflate_offered = deflate
        self.inflate = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.handshake and not self._handshake_done():
            return
        while (frame := _next_frame(self.buf)) is not None:
            self._frame(*frame)

    def _handshake_done(self) -> bool:
        """Consume the HTTP 101 answer once it is whole; False while it is not (or refused)."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buf[:end]).lower()
        del self.buf[: end + 4]
        if not head.startswith(b"http/1.1 101"):
            self.ready.set_exception(ConnectionError(head[:80].decode(errors="replace")))
            self.transport.close()
            return False
        if b"permessage-deflate" in head:
            self.inflate = zlib.decompressobj(-15)
        self.handshake = False
        self.ready.set_result(True)
        return True

    def _frame(self, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        self.frames += 1
        if opcode == 1:
            try:
                if b0 & 0x40 and self.inflate is not None:
                    payload = self.inflate.decompress(payload + b"\x00\x00\xff\xff")
                self.sink.message(self, payload)
            except Exception as exc:  # keep the socket: count it, do not kill the viewer
                self.sink.parse_errors.append(repr(exc)[:120])
        elif opcode == 9:  # ping -> pong
            self._send(0xA, payload)
        elif opcode == 8:
            self.closed = True
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = secrets.token_bytes(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(str(exc)))


class _Sink:
    """Collects lags; a message is ``...,"version":N,...,"ts":T...``."""

    def __init__(self, min_version: int) -> None:
        self.min_version = min_version
        self.lags: list[float] = []
        self.delivered = 0
        self.parse_errors: list[str] = []

    def message(self, viewer: _Viewer, payload: bytes) -> None:
        now_ms = time.time() * 1000
        i = payload.find(b'"version":')
        if i < 0:
            return
        j = i + 10
        k = j
        while k < len(payload) and 48 <= payload[k] <= 57:
            k += 1
        version = int(payload[j:k])
        if viewer.first_version < 0:
            viewer.first_version = version
        viewer.version = max(viewer.version, version)
        if version < self.min_version:
            return  # the snapshot (or anything from before the run)
        t = payload.find(b'"ts":', k)
        if t < 0:
            return
        t += 5
        e = t
        while e < len(payload) and 48 <= payload[e] <= 57:
            e += 1
        self.delivered += 1
        self.lags.append(now_ms - int(payload[t:e]))


def _next_frame(buf: bytearray) -> tuple[int, bytes] | None:
    """Take one whole server frame (unmasked) off ``buf``: ``(first byte, payload)``, or None."""
    if len(buf) < 2:
        return None
    n, off = buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, off = int.from_bytes(buf[2:4], "big"), 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, off = int.from_bytes(buf[2:10], "big"), 10
    if len(buf) < off + n:
        return None
    b0, payload = buf[0], bytes(buf[off : off + n])
    del buf[: off + n]
    return b0, payload


async def _open_viewer(host: str, port: int, path: str, sink: _Sink, deflate: bool) -> _Viewer:
    loop = asyncio.get_running_loop()
    _, viewer = await loop.create_connection(lambda: _Viewer(sink, deflate), host, port)
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""
    viewer.transport.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"{ext}\r\n"
        ).encode()
    )
    await asyncio.wait_for(viewer.ready, 30)
    return viewer


# --- servers -----------------------------------------------------------------------------


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@contextmanager
def _server(layer: str, workers: int) -> Iterator[tuple[ManagedProcess, int]]:
    """uvicorn for ``layer`` (a child of its own :class:`tools.stack.Stack` under
    ``.bench/fanout-<layer>``); yields it and its port, serving."""
    from django.conf import settings

    from tools.bench.harness import start_asgi
    from tools.stack import Stack
    from transport.hub import UVICORN_WS_ARGS

    backlog = ["--backlog", "4096"]
    if layer == "hub":
        app, flags, probe = "liveops.asgi:application", [*UVICORN_WS_ARGS, *backlog], "/api/bosses/-/state"
    elif layer == "pubsub-tuned":
        app, flags, probe = "tools.bench.baseline_asgi:application", [*UVICORN_WS_ARGS, *backlog], "/"
    else:  # stock: uvicorn's defaults (per-message deflate on)
        app, flags, probe = "tools.bench.baseline_asgi:application", ["--no-access-log", *backlog], "/"
    env = {
        **os.environ,
        "REDIS_URL": settings.REDIS_URL,
        "BROKER_URL": settings.BROKER_URL,
        "CHANNELS_URL": settings.CHANNELS_URL,
        "DATABASE_URL": _database_url(),
        "BENCH_LAYER": layer.split("-", maxsplit=1)[0],
    }
    with Stack(run_dir=ROOT / ".bench" / f"fanout-{layer}", env=env) as stack:
        proc, base = start_asgi(stack, workers=workers, app=app, flags=flags, probe=probe)
        yield proc, int(base.rsplit(":", 1)[1])


# --- publishers --------------------------------------------------------------------------


def _state_text(slug: str, version: int, hp: int) -> str:
    from core import messages

    frame = messages.state_frame(
        boss=slug,
        hp=hp,
        max_hp=10**9,
        version=version,
        status="live",
        phase="Opening",
        phase_index=0,
        ts=int(time.time() * 1000),
        gen=0,
    )
    return json.dumps(frame, separators=(",", ":"))


def _publish(layer: str, *, boss_id: int, slug: str, first_version: int, count: int, hz: float) -> int:
    """Publish ``count`` states at ``hz`` from a thread with its own loop; returns the last version."""
    from django.conf import settings

    from core import keys

    async def go() -> None:
        period = 1.0 / hz
        start = time.monotonic()
        if layer == "hub":
            import redis.asyncio as aioredis

            r = aioredis.Redis.from_url(settings.REDIS_URL)
            send: Callable[[str], Any] = lambda text: r.publish(keys.state_channel(boss_id), text)
        else:
            from channels_redis.core import RedisChannelLayer
            from channels_redis.pubsub import RedisPubSubChannelLayer

            cls = RedisChannelLayer if layer == "core" else RedisPubSubChannelLayer  # pubsub(-tuned)
            chl = cls(hosts=[settings.CHANNELS_URL])
            send = lambda text: chl.group_send(f"bench_{boss_id}", {"type": "state.message", "text": text})
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i * period - time.monotonic()))
            await send(_state_text(slug, first_version + i, 10**9 - i))
        if layer == "hub":
            await r.aclose()
        else:
            close = getattr(chl, "flush", None)
            if close:
                try:
                    await close()
                except Exception:
                    pass

    thread = threading.Thread(target=lambda: asyncio.run(go()), daemon=True)
    thread.start()
    return thread  # type: ignore[return-value]


# --- one run -----------------------------------------------------------------------------


def _bench_boss() -> tuple[int, str, int]:
    """A live boss for the hub layer (its authority version is the snapshot's)."""
    from bosses.models import BossEncounter
    from bosses.services import boss_go_live

    slug = f"fanout-{secrets.token_hex(4)}"
    boss = BossEncounter.objects.create(name="Fan-out bench", slug=slug, max_hp=10**9)
    state = boss_go_live(boss=boss)
    return boss.pk, slug, state.version


def _end_boss(boss_id: int) -> None:
    """Take the bench boss out of the live set (a running beat would keep visiting it)."""
    from bosses.models import BossEncounter
    from bosses.services import boss_end

    try:
        boss_end(boss=BossEncounter.objects.get(pk=boss_id))
    except Exception:
        pass


def run_fanout(
    *,
    layer: str,
    viewers: int,
    hz: float = 10.0,
    seconds: float = 10.0,
    workers: int | None = None,
    drain_s: float = DRAIN_S,
    progress: Callable[[str], None] | None = None,
) -> FanoutResult:
    """Run one measurement (see the module docstring). Blocking; starts and stops its server."""
    if layer not in LAYERS + EXTRA_LAYERS:
        raise ValueError(f"layer must be one of {LAYERS + EXTRA_LAYERS}")
    tuned = layer in ("hub", "pubsub-tuned")
    workers = workers or (HUB_WORKERS if tuned else STOCK_WORKERS)
    say = progress or (lambda _msg: None)
    result = FanoutResult(layer, viewers, hz, seconds, workers)
    if layer == "hub":
        boss_id, slug, snap_version = _bench_boss()
        path = f"/ws/bosses/{slug}/"
    else:
        boss_id, slug, snap_version = secrets.randbelow(10**6) + 10**6, "bench", 0
        path = f"/ws/bench/{boss_id}/"
    try:
        with _server(layer, workers) as (proc, port):
            say(f"fanout {layer}: {viewers} viewers, {hz:g} Hz, {seconds:g} s, {workers} worker(s)")
            run = _Run(proc=proc, port=port, result=result, path=path, slug=slug, boss_id=boss_id)
            result = run_loop(_drive(run, snap_version, drain_s, layer))
    finally:
        if layer == "hub":
            _end_boss(boss_id)
    say(
        f"fanout {layer}: delivered {100 * result.delivered_ratio:.1f} %, p99 {result.p99_lag_ms} ms, "
        f"final {result.ended_on_final}/{viewers}"
    )
    return result


@dataclass
class _Run:
    """One measurement in progress: its server, its result, the boss it publishes for."""

    proc: ManagedProcess
    port: int
    result: FanoutResult
    path: str
    slug: str
    boss_id: int


async def _connect_all(run: _Run, sink: _Sink) -> list[_Viewer]:
    """Every viewer, :data:`CONNECT_CONCURRENCY` at a time (browsers always offer deflate;
    only the stock servers accept it); the first errors go to the result."""
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[_Viewer] = []
    errors = run.result.errors

    async def one() -> None:
        async with sem:
            try:
                clients.append(await _open_viewer("127.0.0.1", run.port, run.path, sink, True))
            except Exception as exc:
                if len(errors) < 5:
                    errors.append(f"connect: {exc!r}"[:200])

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(run.result.viewers))), CONNECT_TIMEOUT_S)
    return clients


async def _wait_snapshots(clients: list[_Viewer], started: float) -> float:
    """Seconds from ``started`` until every viewer had its snapshot (the hub subscribes
    before reading it, so a snapshot means subscribed)."""
    while time.monotonic() - started < CONNECT_TIMEOUT_S and any(c.first_version < 0 for c in clients):
        await asyncio.sleep(0.05)
    return round(time.monotonic() - started, 2)


async def _drain(clients: list[_Viewer], final_version: int, drain_s: float) -> float:
    """Wait up to ``drain_s`` for every viewer to reach ``final_version``; returns the wait."""
    start = time.monotonic()
    while time.monotonic() - start < drain_s:
        if all(c.version >= final_version for c in clients):
            break
        await asyncio.sleep(0.05)
    return round(time.monotonic() - start, 2)


def _record(result: FanoutResult, sink: _Sink, clients: list[_Viewer]) -> None:
    """Delivered counts, lag percentiles and what went wrong, into ``result``."""
    result.delivered = sink.delivered
    result.ended_on_final = sum(1 for c in clients if c.version >= result.final_version)
    if sink.parse_errors:
        result.errors.append(f"{len(sink.parse_errors)} unparsable frames, e.g. {sink.parse_errors[:3]}")
    behind = [
        (c.first_version, c.version, c.frames, c.close_code if c.closed else None)
        for c in clients
        if c.version < result.final_version
    ]
    if behind:
        result.errors.append(
            f"{len(behind)} viewers behind; (first version, last version, frames, "
            f"close code) e.g. {behind[:5]}"
        )
    if sink.lags:
        lags = summarize_ms(sink.lags)
        result.p50_lag_ms, result.p99_lag_ms, result.max_lag_ms = (
            lags["p50_ms"],
            lags["p99_ms"],
            lags["max_ms"],
        )


async def _drive(run: _Run, snap_version: int, drain_s: float, layer: str) -> FanoutResult:
    result = run.result
    first = snap_version + 1
    sink = _Sink(min_version=first)
    rss0 = group_rss_kib(run.proc.pid)
    started = time.monotonic()
    clients = await _connect_all(run, sink)
    result.connected = len(clients)
    if layer == "hub":
        result.subscribed_s = await _wait_snapshots(clients, started)
    await asyncio.sleep(1.0)  # group joins / subscriptions settle
    if clients:
        result.rss_per_socket_kib = round((group_rss_kib(run.proc.pid) - rss0) / len(clients), 1)
    count = max(1, int(result.seconds * result.hz))
    result.published = count
    result.final_version = first + count - 1
    result.expected = count * result.viewers
    cpu0, ccpu0 = group_cpu_seconds(run.proc.pid), time.process_time()
    thread = _publish(
        layer, boss_id=run.boss_id, slug=run.slug, first_version=first, count=count, hz=result.hz
    )
    while thread.is_alive():
        await asyncio.sleep(0.05)
    result.drain_s = await _drain(clients, result.final_version, drain_s)
    result.server_cpu_s = round(group_cpu_seconds(run.proc.pid) - cpu0, 2)
    result.client_cpu_s = round(time.process_time() - ccpu0, 2)
    _record(result, sink, clients)
    for c in clients:
        if c.transport is not None:
            c.transport.abort()
    await asyncio.sleep(0.2)
    return result


# --- manage.py bench / CLI ---------------------------------------------------------------


def bench_rows(
    *,
    quick: bool,
    seconds: float,
    viewers: list[int],
    progress: Callable[[str], None] | None = None,
    layers: tuple[str, ...] = LAYERS,
    hz: float = 10.0,
) -> dict[str, Any]:
    """Every layer at every viewer count (quick: the hub only); ``{"rows", "note"}``."""
    counts = list(viewers)
    if quick:  # the stock layers saturate and wait out the drain: too slow for a quick run
        layers = ("hub",)
    rows = []
    for n in counts:
        for layer in layers:
            try:
                rows.append(
                    run_fanout(layer=layer, viewers=n, hz=hz, seconds=seconds, progress=progress).as_row()
                )
            except Exception as exc:  # one failing layer must not hide the others
                rows.append({"layer": layer, "viewers": n, "error": f"{type(exc).__name__}: {exc}"[:300]})
    note = (
        f"{hz:g} states/s for {seconds:g} s; load generator (one asyncio process, lean client) on the "
        f"same machine; core/pubsub: stock consumer in a group, stock uvicorn flags, "
        f"{STOCK_WORKERS} process; hub: transport/hub.py, {HUB_WORKERS} uvicorn processes with "
        "UVICORN_WS_ARGS. Lag = receipt - publish time, over delivered messages; "
        f"undelivered messages are counted after a {DRAIN_S:g} s drain."
    )
    return {"rows": rows, "note": note}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The docs/fanout.md table."""
    out = [
        "| layer | workers | viewers | delivered / expected | delivered % | p50 lag | p99 lag | max lag | "
        "ended on final version | server CPU s | client CPU s | server RSS per socket |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("error"):
            out.append(f"| {r['layer']} | | {r['viewers']} | error: {r['error']} | | | | | | | | |")
            continue
        out.append(
            f"| {r['layer']} | {r['workers']} | {r['viewers']:,} | {r['delivered']:,} / {r['expected']:,} | "
            f"{r['delivered_pct']:.1f} | {r['p50_lag_ms']} ms | {r['p99_lag_ms']} ms | {r['max_lag_ms']} ms | "
            f"{r['ended_on_final']:,} / {r['viewers']:,} | {r['server_cpu_s']} | {r['client_cpu_s']} | "
            f"{r.get('rss_per_socket_kib')} KiB |"
        )
    return "\n".join(out)


def _standalone_setup(redis_url: str) -> None:
    """Django on a fresh temporary SQLite database and the given Redis (dbs: url's, +1, +2)."""
    db = Path(tempfile.mkdtemp(prefix="fanout-bench-")) / "bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveops.settings")
    os.environ["DATABASE_URL"] = f"sqlite:///{db}"
    os.environ["REDIS_URL"] = redis_url
    os.environ.pop("BROKER_URL", None)
    os.environ.pop("CHANNELS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    import redis
    from django.conf import settings

    for url in {settings.REDIS_URL, settings.CHANNELS_URL}:
        client = redis.Redis.from_url(url)
        if int(client.connection_pool.connection_kwargs.get("db", 0)) < 8:
            raise SystemExit(f"refusing to flush {url}: use a Redis db >= 8")
        client.flushdb()


def main(argv: list[str] | None = None) -> None:
    """``python -m tools.bench.fanout --viewers 500,2000 --layers core,pubsub,hub --seconds 10``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--viewers", default="2000")
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--hz", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=0, help="uvicorn processes (0: per-layer default)")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    _standalone_setup(args.redis_url)
    rows = []
    for n in [int(v) for v in args.viewers.split(",")]:
        for layer in args.layers.split(","):
            try:
                res = run_fanout(
                    layer=layer,
                    viewers=n,
                    hz=args.hz,
                    seconds=args.seconds,
                    workers=args.workers or None,
                    progress=lambda m: print(m, flush=True),
                )
                rows.append(res.as_row())
            except Exception as exc:
                rows.append({"layer": layer, "viewers": n, "error": f"{type(exc).__name__}: {exc}"[:300]})
                print(f"fanout {layer}: error {exc}", flush=True)
    print(markdown_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
