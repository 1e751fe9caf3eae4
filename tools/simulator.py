"""The load simulator behind ``manage.py fight``, ``manage.py demo`` and the bench's end-to-end rows.

Everything goes over real WebSockets to a running ASGI server (docs/protocol.md):

- **hosted players** connect to ``/ws/shards/<shard>/?player=<id>`` (the server must run in
  simulator mode, ``LIVEOPS_SIMULATOR_PLAYERS=1``, as ``demo`` and ``bench`` start it; the
  shards must be hosted ones, docs/security.md) and send
  ``attack {boss, id}`` at a steady rate (the server draws the damage, rate-limits and
  buffers it in its hosted shard); ``attack_ack`` carries the damage;
- **SDK game servers** authenticate on ``/ws/shards/<shard>/`` with their shard token, add
  their players' hits to a :class:`worldboss_sdk.buffer.LocalBuffer` in memory (the SDK's buffer)
  and send one ``damage {boss, amount, seq}`` per 100 ms shard tick, re-sending the same seq
  until acked, with a ``heartbeat`` every second;
- **a viewer** on ``/ws/bosses/<slug>/`` receives the states (states/s, HP, version, and the
  receipt time of each version for freshness).

Freshness (hit -> first received state whose version includes it) is computed after the
run from the boss's event log (tools/bench/freshness.py): exact for SDK servers (their
session is known); for hosted players, per shard in ack order (exact up to the ordering of
acks between sockets of one shard, a few ms).

This module only talks to the server; creating shards/tokens and verifying the boss are the
callers' job (they run next to the platform).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from core.keys import parse_session, session_id
from tools.bench.freshness import FreshnessTracker
from tools.bench.harness import percentile, run_loop

SHARD_TICK_S = 0.1
HEARTBEAT_S = 1.0
ACK_TIMEOUT_S = 2.0
FINAL_ACKS_TIMEOUT_S = 20.0
# Attacks a player has sent without an answer yet; at this many it waits (closed loop), so an
# overloaded server slows the players down instead of queueing without bound.
MAX_INFLIGHT_ATTACKS = 4
RECONNECT_BACKOFF_S = (0.2, 0.5, 1.0, 2.0)
# A refused viewer waits this long (or the refusal's retry_after_ms) before it tries again.
VIEWER_REFUSED_BACKOFF_S = 2.0
ATTACK_SAMPLE_EVERY = 7  # hosted attacks sampled for freshness
SDK_HIT_BATCH = 2_000  # hits between yields of an SDK hit loop (keeps its ticker on time)
SDK_MIN_DAMAGE, SDK_MAX_DAMAGE = 50, 150
SDK_DAMAGES = [random.Random(11).randint(SDK_MIN_DAMAGE, SDK_MAX_DAMAGE) for _ in range(4096)]


def ws_base(url: str) -> str:
    """``http://host:port`` (or ws://) -> ``ws://host:port``."""
    p = urlsplit(url if "://" in url else f"http://{url}")
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(p.scheme, "ws")
    return urlunsplit((scheme, p.netloc, "", "", ""))


@dataclass
class ShardSpec:
    """A shard the fight uses: hosted (players attack through the gateway) or an SDK server."""

    key: str
    token: str | None = None  # set: an SDK game server with this token; None: hosted players

    @property
    def sdk(self) -> bool:
        return self.token is not None


@dataclass
class FightPlan:
    """What to simulate."""

    url: str
    boss: str
    shards: list[ShardSpec]
    players: int = 0  # hosted players, spread over the hosted shards
    attacks_per_player_s: float = 5.0
    sdk_hits_per_s: float | None = 20_000.0  # per SDK server; None = as fast as it can
    sdk_players: int = 1_000  # distinct players per SDK server (for the breakdown)
    sdk_processes: int = 0  # 0: SDK servers in this process; N: spread over N children
    duration_s: float | None = None  # None: until the boss dies or stop() is called
    connect_concurrency: int = 50


class _ViewerRefused(Exception):
    """The server answered the viewer with an ``error`` frame (it closes the socket next)."""

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"viewer refused: {frame}")
        self.frame = frame


@dataclass
class FightStats:
    """Live counters of a fight (read by progress lines) and its result."""

    started: float = 0.0
    ended: float = 0.0
    attacks_sent: int = 0
    attacks_acked: int = 0
    acked_in_window: int = 0  # attacks acked before the fight's clock stopped
    attack_damage: int = 0
    attacks_refused: dict[str, int] = field(default_factory=dict)
    sdk_hits: int = 0
    sdk_damage_acked: int = 0
    sdk_deltas: int = 0
    sdk_duplicates: int = 0
    sdk_errors: dict[str, int] = field(default_factory=dict)
    players_connected: int = 0
    servers_connected: int = 0
    connect_errors: int = 0
    # the viewer's refusals by code (the per-address socket cap answers rate_limited): it
    # backs off and connects again; the fight goes on without it meanwhile
    viewer_refused: dict[str, int] = field(default_factory=dict)
    viewer_refusal: str = ""  # the last refusal's message
    states: int = 0
    hp: int | None = None
    max_hp: int | None = None
    version: int = 0
    status: str = ""
    events: list[dict] = field(default_factory=list)
    tracker: FreshnessTracker = field(default_factory=FreshnessTracker)
    # per hosted shard: cumulative acked damage (freshness is computed per shard key)
    shard_acked: dict[str, int] = field(default_factory=dict)

    @property
    def elapsed(self) -> float:
        end = self.ended or time.monotonic()
        return max(1e-9, end - self.started) if self.started else 0.0

    def add_sdk_result(self, r: dict[str, Any]) -> None:
        """Count what an SDK game server reported at its end (:func:`sdk_server_run`)."""
        self.sdk_damage_acked += r["acked"]
        self.sdk_deltas += r["deltas_sent"]
        self.sdk_duplicates += r["duplicates"]
        _add_counts(self.sdk_errors, r["errors"])

    def refused(self, code: str, into: dict[str, int] | None = None) -> None:
        target = self.attacks_refused if into is None else into
        target[code] = target.get(code, 0) + 1


def _add_counts(into: dict[str, int], counts: dict[str, int]) -> None:
    for code, n in counts.items():
        into[code] = into.get(code, 0) + n


@dataclass
class _Attacks:
    """One hosted player's attacks in flight (id -> sent time) and the slot signal."""

    sent: dict[int, float] = field(default_factory=dict)
    room: asyncio.Event = field(default_factory=asyncio.Event)  # an answer freed a slot
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))


class Fight:
    """Runs a :class:`FightPlan`; ``await run()``; ``stop()`` ends it early (Ctrl-C)."""

    def __init__(self, plan: FightPlan) -> None:
        self.plan = plan
        self.stats = FightStats()
        self._stop = asyncio.Event()
        self._hit_stop = asyncio.Event()
        self._go = asyncio.Event()  # set once everyone is connected: the clock starts
        self.base = ws_base(plan.url)
        self._tasks: list[asyncio.Task] = []

    def stop(self) -> None:
        """Stop attacking (SDK servers still flush what they hold)."""
        self._hit_stop.set()

    @property
    def boss_over(self) -> bool:
        return self.stats.status in ("defeated", "expired")

    async def run(
        self, *, on_tick: Callable[[FightStats], None] | None = None, tick_s: float = 0.5
    ) -> FightStats:
        """Connect everyone, fight until duration / death / stop(), flush, return the stats."""
        s = self.stats
        viewer_ready = asyncio.Event()
        viewer = asyncio.create_task(self._viewer(viewer_ready))
        await asyncio.wait_for(viewer_ready.wait(), 15)
        hosted = [sh for sh in self.plan.shards if not sh.sdk]
        sdk = [sh for sh in self.plan.shards if sh.sdk]
        sem = asyncio.Semaphore(self.plan.connect_concurrency)
        players_ready: list[asyncio.Event] = []
        if hosted:
            for n in range(self.plan.players):
                ev = asyncio.Event()
                players_ready.append(ev)
                self._tasks.append(
                    asyncio.create_task(self._player(hosted[n % len(hosted)].key, f"sim-{n}", sem, ev))
                )
        if sdk and self.plan.sdk_processes:
            servers_ready = [asyncio.Event()]
            servers = [
                asyncio.create_task(self._server_processes(sdk, self.plan.sdk_processes, servers_ready[0]))
            ]
        else:
            servers_ready = [asyncio.Event() for _ in sdk]
            servers = [asyncio.create_task(self._server(sh, ev)) for sh, ev in zip(sdk, servers_ready)]
        # start the clock once everyone is connected (or gave up)
        for ev in players_ready + servers_ready:
            await ev.wait()
        s.started = time.monotonic()
        self._go.set()
        deadline = s.started + self.plan.duration_s if self.plan.duration_s else None
        while not self._hit_stop.is_set():
            if on_tick:
                on_tick(s)
            if self.boss_over or (deadline and time.monotonic() >= deadline):
                break
            wait_s = tick_s if deadline is None else max(0.01, min(tick_s, deadline - time.monotonic()))
            try:
                await asyncio.wait_for(self._hit_stop.wait(), wait_s)
            except TimeoutError:
                pass
        self._hit_stop.set()
        s.ended = time.monotonic()
        s.acked_in_window = s.attacks_acked
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*servers, return_exceptions=True)  # they flush first
        self._stop.set()
        await asyncio.gather(viewer, return_exceptions=True)
        if on_tick:
            on_tick(s)
        return s

    # --- viewer ---------------------------------------------------------------------

    async def _viewer(self, ready: asyncio.Event) -> None:
        s = self.stats
        url = f"{self.base}/ws/bosses/{self.plan.boss}/"
        attempt = 0
        while not self._stop.is_set():
            try:
                async with connect(url, compression=None, open_timeout=10, max_size=2**20) as ws:
                    attempt = 0
                    while not self._stop.is_set():
                        try:
                            text = await asyncio.wait_for(ws.recv(), 0.25)
                        except TimeoutError:
                            continue
                        self._viewer_message(json.loads(text), time.time(), ready)
            except _ViewerRefused as refused:
                # refused (the per-address socket cap, a frame limit): not the end of the
                # fight. Say so, let the fight start without a viewer, wait, try again.
                code = str(refused.frame.get("code") or "error")
                s.viewer_refused[code] = s.viewer_refused.get(code, 0) + 1
                s.viewer_refusal = str(refused.frame.get("detail") or code)
                ready.set()
                retry_s = float(refused.frame.get("retry_after_ms") or 0) / 1000
                await asyncio.sleep(max(retry_s, VIEWER_REFUSED_BACKOFF_S))
            except (TimeoutError, OSError, ConnectionClosed) as exc:
                if self._stop.is_set():
                    return
                await asyncio.sleep(RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)])
                attempt += 1
                if attempt > 20:
                    raise RuntimeError(f"viewer could not connect to {url}: {exc}") from exc

    def _viewer_message(self, msg: dict[str, Any], now: float, ready: asyncio.Event) -> None:
        """One frame the viewer received into the stats; an ``error`` raises _ViewerRefused."""
        s = self.stats
        kind = msg.get("type")
        if kind == "state":
            v = int(msg["version"])
            if v > s.version or s.hp is None:
                s.version, s.hp, s.max_hp, s.status = (v, msg["hp"], msg["max_hp"], msg["status"])
            s.states += 1
            s.tracker.state(v, now)
            ready.set()
        elif kind in ("phase", "defeated", "expired"):
            s.events.append(msg)
            if kind in ("defeated", "expired"):
                s.status = kind
        elif kind == "error":
            raise _ViewerRefused(msg)

    # --- hosted players -----------------------------------------------------------------

    async def _player(
        self, shard_key: str, player: str, sem: asyncio.Semaphore, ready: asyncio.Event
    ) -> None:
        ws = await self._player_connect(f"{self.base}/ws/shards/{shard_key}/?player={player}", sem, ready)
        if ws is None:
            return
        attacks = _Attacks()
        read_task = asyncio.create_task(self._player_reader(ws, shard_key, attacks))
        try:
            await self._go.wait()
            await self._attack_loop(ws, attacks)
            # every attack sent gets its ack (or error) before we leave: an overloaded server
            # answers late, and a socket closed early would leave applied damage unacked
            deadline = time.monotonic() + FINAL_ACKS_TIMEOUT_S
            while attacks.sent and time.monotonic() < deadline and not read_task.done():
                await asyncio.sleep(0.05)
        except ConnectionClosed:
            self.stats.refused("closed")
        finally:
            await ws.close()
            read_task.cancel()
            await asyncio.gather(read_task, return_exceptions=True)

    async def _player_connect(self, url: str, sem: asyncio.Semaphore, ready: asyncio.Event):
        """The player's socket once welcomed (None: it could not join; counted)."""
        s = self.stats
        try:
            async with sem:
                ws = await connect(url, compression=None, open_timeout=20, max_size=2**20)
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if welcome.get("type") != "welcome":
                raise RuntimeError(f"{url}: expected welcome, got {welcome}")
        except Exception:
            s.connect_errors += 1
            return None
        finally:
            ready.set()
        s.players_connected += 1
        return ws

    async def _player_reader(self, ws, shard_key: str, attacks: _Attacks) -> None:
        """Acks and refusals of the player's attacks; freshness samples of the shard."""
        s = self.stats
        try:
            async for text in ws:
                msg = json.loads(text)
                kind = msg.get("type")
                if kind == "attack_ack":
                    at = attacks.sent.pop(msg.get("id"), None)
                    dmg = int(msg["damage"])
                    s.attacks_acked += 1
                    s.attack_damage += dmg
                    cum = s.shard_acked.get(shard_key, 0) + dmg
                    s.shard_acked[shard_key] = cum
                    if at is not None and msg.get("id", 0) % ATTACK_SAMPLE_EVERY == 0:
                        s.tracker.hit(f"shard:{shard_key}", cum, at)
                elif kind == "error":
                    attacks.sent.pop(msg.get("id"), None)
                    s.refused(str(msg.get("code")))
                attacks.room.set()
        except ConnectionClosed:
            pass
        finally:
            attacks.room.set()

    async def _attack_loop(self, ws, attacks: _Attacks) -> None:
        """Attacks at the plan's rate until the fight stops, at most
        :data:`MAX_INFLIGHT_ATTACKS` unanswered (closed loop)."""
        interval = 1.0 / self.plan.attacks_per_player_s
        # spread players over the interval so attacks do not arrive in bursts
        await asyncio.sleep(random.random() * interval)
        next_at = time.monotonic()
        while not self._hit_stop.is_set() and not self.boss_over:
            if len(attacks.sent) >= MAX_INFLIGHT_ATTACKS:  # a player waits for the server
                attacks.room.clear()
                try:
                    await asyncio.wait_for(attacks.room.wait(), 1.0)
                except TimeoutError:
                    pass
                next_at = max(next_at, time.monotonic())
                continue
            n = next(attacks.ids)
            attacks.sent[n] = time.time()
            await ws.send(json.dumps({"type": "attack", "boss": self.plan.boss, "id": n}))
            self.stats.attacks_sent += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # far behind (overloaded): do not burst to catch up
                next_at = time.monotonic()

    # --- SDK game servers ----------------------------------------------------------------

    async def _server(self, shard: ShardSpec, ready: asyncio.Event) -> None:
        """One SDK game server in this process (the reference SDK, sdk/worldboss_sdk/client.py)."""
        s = self.stats
        plan = self.plan

        def on_hits(n: int) -> None:
            s.sdk_hits += n

        try:
            result = await sdk_server_run(
                SdkServer(
                    self.base, plan.boss, shard.key, shard.token or "", plan.sdk_hits_per_s, plan.sdk_players
                ),
                SdkControl(
                    ready=ready,
                    go=self._go,
                    stop=self._hit_stop,
                    on_hits=on_hits,
                    on_sample=s.tracker.hit,
                    connected=self._server_connected,
                ),
            )
        except Exception:
            s.connect_errors += 1
            ready.set()
            return
        s.add_sdk_result(result)

    def _server_connected(self) -> None:
        self.stats.servers_connected += 1

    async def _server_processes(self, sdk: list[ShardSpec], procs: int, ready: asyncio.Event) -> None:
        """SDK game servers in ``procs`` child processes (game servers are separate processes)."""
        groups = [sdk[i::procs] for i in range(procs) if sdk[i::procs]]
        children = [await self._spawn_sdk_child(group) for group in groups]
        pending = {"n": len(groups)}
        readers = [asyncio.create_task(self._read_child(c, pending, ready)) for c in children]
        try:
            await self._go.wait()
            await _tell(children, b"go\n")
            await self._hit_stop.wait()
            await _tell(children, b"stop\n")
            await asyncio.gather(*readers)
            for c in children:
                await c.wait()
        finally:
            for c in children:
                if c.returncode is None:
                    c.kill()
                    await c.wait()

    async def _spawn_sdk_child(self, group: list[ShardSpec]):
        """``python -m tools.simulator`` running ``group``'s servers (its spec on stdin); it
        dies with this process (``die_with_parent``), and stops when its stdin ends."""
        import sys

        from tools.stack import die_with_parent

        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tools.simulator",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**24,
            preexec_fn=die_with_parent(),  # fork-safe: see die_with_parent
        )
        spec = {
            "url": self.base,
            "boss": self.plan.boss,
            "rate": self.plan.sdk_hits_per_s,
            "players": self.plan.sdk_players,
            "shards": [[sh.key, sh.token] for sh in group],
        }
        child.stdin.write((json.dumps(spec) + "\n").encode())
        await child.stdin.drain()
        return child

    async def _read_child(self, child, pending: dict[str, int], ready: asyncio.Event) -> None:
        """A child's report lines into the stats; ``ready`` once every child said ready."""
        s = self.stats
        while line := await child.stdout.readline():
            kind, _, body = line.decode().partition(" ")
            if kind == "ready":
                ok, failed = (int(x) for x in body.split())
                s.servers_connected += ok
                s.connect_errors += failed
                pending["n"] -= 1
                if pending["n"] == 0:
                    ready.set()
            elif kind == "hits":
                s.sdk_hits += int(body)
            elif kind == "result":
                r = json.loads(body)
                s.add_sdk_result(r)
                for sess, cumulative, at in r["samples"]:
                    s.tracker.hit(sess, cumulative, at)


async def _tell(children, command: bytes) -> None:
    for c in children:
        c.stdin.write(command)
        await c.stdin.drain()


def _damage_sum(start: int, n: int) -> int:
    """Sum of SDK_DAMAGES[k & 4095] for k in [start, start + n)."""
    full, rest = divmod(n, 4096)
    total = full * _DAMAGE_TOTAL
    a = start & 4095
    end = a + rest
    if end <= 4096:
        return total + _DAMAGE_PREFIX[end] - _DAMAGE_PREFIX[a]
    return total + _DAMAGE_PREFIX[4096] - _DAMAGE_PREFIX[a] + _DAMAGE_PREFIX[end - 4096]


_DAMAGE_PREFIX = list(itertools.accumulate(SDK_DAMAGES, initial=0))
_DAMAGE_TOTAL = _DAMAGE_PREFIX[-1]


@dataclass
class SdkServer:
    """One SDK game server to run: where, which boss and shard, how fast (None: flat out)."""

    url: str
    boss: str
    shard: str
    token: str
    rate: float | None
    players: int


@dataclass
class SdkControl:
    """How a running SDK game server is driven and what it reports as it goes."""

    ready: asyncio.Event  # set once connected (or failed)
    go: asyncio.Event  # hits start
    stop: asyncio.Event  # hits end; the server flushes and returns
    on_hits: Callable[[int], None]
    on_sample: Callable[[str, int, float], None]  # (session, cumulative damage, hit time)
    connected: Callable[[], None] = lambda: None


async def sdk_server_run(server: SdkServer, control: SdkControl) -> dict[str, Any]:
    """One game server on the reference SDK: hits in memory at ``server.rate`` from ``go``
    until ``stop``; the SDK sends one delta per 100 ms and heartbeats; flushes at the end.
    """
    from worldboss_sdk.client import ShardClient

    client = ShardClient(server.url, shard=server.shard, token=server.token)
    await client.start()
    try:
        await client.wait_connected(20)
    except Exception:
        await client.stop(flush=False)
        raise
    control.connected()
    control.ready.set()
    await control.go.wait()
    await _sdk_hits(client, server, control)
    await client.stop(flush=True, timeout_s=FINAL_ACKS_TIMEOUT_S)
    st = client.stats
    return {
        "acked": st.acked,
        "deltas_sent": st.sent - st.resent,
        "duplicates": st.duplicates,
        "errors": dict(st.errors),
        "fences": st.fences,
        "held": client.unacked(server.boss),
    }


async def _sdk_hits(client, server: SdkServer, control: SdkControl) -> None:
    """The hit loop: batches of :data:`SDK_HIT_BATCH` (paced to ``server.rate`` when set), the
    first hit of each a freshness sample, the rest the bare hot path."""
    names = [f"{server.shard}-p{i}" for i in range(max(1, server.players))]
    hit, boss = client.hit, server.boss
    i = random.randrange(4096)
    started = time.monotonic()
    done = 0
    session_epoch = client.epoch
    added = 0  # damage added under the current epoch (freshness cumulative per session)
    while not control.stop.is_set():
        n = SDK_HIT_BATCH
        if server.rate is not None:
            n = min(SDK_HIT_BATCH, int((time.monotonic() - started) * server.rate) - done)
            if n <= 0:
                await asyncio.sleep(0.005)
                continue
        if client.epoch != session_epoch:  # fenced and rejoined: a new session counts from 0
            session_epoch, added = client.epoch, 0
        player = names[(done // 64) % len(names)]
        d = SDK_DAMAGES[i & 4095]
        hit(boss, d, player)
        control.on_sample(session_id(server.shard, session_epoch), added + d, time.time())
        for k in range(i + 1, i + n):
            hit(boss, SDK_DAMAGES[k & 4095], player)
        added += _damage_sum(i, n)
        i += n
        done += n
        control.on_hits(n)
        await asyncio.sleep(0)


class _HitReport:
    """A child's hit count, reported to the parent as ``hits <n>`` lines (the increase)."""

    def __init__(self) -> None:
        self.hits = self.reported = 0

    def add(self, n: int) -> None:
        self.hits += n

    def flush(self) -> None:
        if self.hits != self.reported:
            print(f"hits {self.hits - self.reported}", flush=True)
            self.reported = self.hits

    async def every(self, period_s: float) -> None:
        while True:
            await asyncio.sleep(period_s)
            self.flush()


def _read_commands(loop, go: asyncio.Event, stop: asyncio.Event) -> None:
    """A thread: ``go`` / ``stop`` lines from the parent; its end (parent gone) stops too."""
    import sys

    for line in sys.stdin:
        loop.call_soon_threadsafe((go if line.strip() == "go" else stop).set)
    loop.call_soon_threadsafe(stop.set)


def _merged(results: list, samples: list[list]) -> dict[str, Any]:
    """The child's one ``result`` line: every server's counts summed, crashes counted."""
    merged: dict[str, Any] = {"acked": 0, "deltas_sent": 0, "duplicates": 0, "errors": {}, "samples": samples}
    for r in results:
        if isinstance(r, Exception):
            _add_counts(merged["errors"], {"crashed": 1})
            continue
        for k in ("acked", "deltas_sent", "duplicates"):
            merged[k] += r[k]
        _add_counts(merged["errors"], r["errors"])
    return merged


async def _child_servers(spec: dict[str, Any]) -> None:
    """The child's SDK game servers: ready line, hits lines while they run, result line."""
    import threading

    go, stop = asyncio.Event(), asyncio.Event()
    threading.Thread(target=_read_commands, args=(asyncio.get_running_loop(), go, stop), daemon=True).start()
    samples: list[list] = []
    report = _HitReport()

    async def one(key: str, token: str, ready: asyncio.Event):
        server = SdkServer(spec["url"], spec["boss"], key, token, spec["rate"], spec["players"])
        control = SdkControl(
            ready=ready,
            go=go,
            stop=stop,
            on_hits=report.add,
            on_sample=lambda sess, cum, at: samples.append([sess, cum, at]),
        )
        try:
            return await sdk_server_run(server, control)
        except Exception as exc:  # reported as a connect error / crash below
            ready.set()
            return exc

    readies = [asyncio.Event() for _ in spec["shards"]]
    tasks = [asyncio.create_task(one(key, token, ev)) for (key, token), ev in zip(spec["shards"], readies)]
    try:
        await asyncio.wait_for(asyncio.gather(*(ev.wait() for ev in readies)), 30)
    except TimeoutError:
        pass
    failed = sum(1 for t in tasks if t.done() and isinstance(t.result(), Exception))
    ok = sum(ev.is_set() for ev in readies) - failed
    print(f"ready {ok} {len(tasks) - ok}", flush=True)
    reporter = asyncio.create_task(report.every(0.25))
    results = await asyncio.gather(*tasks)
    reporter.cancel()
    report.flush()
    print("result " + json.dumps(_merged(results, samples)), flush=True)


def _child_main() -> None:
    """``python -m tools.simulator``: SDK game servers for a parent Fight (JSON on stdin)."""
    import sys

    run_loop(_child_servers(json.loads(sys.stdin.readline())))


def fight_result(
    stats: FightStats, log_entries: list[tuple[str, dict[str, str]]] | None = None
) -> dict[str, Any]:
    """The figures ``fight`` reports (freshness needs the boss's event log)."""
    e = stats.elapsed
    out: dict[str, Any] = {
        "seconds": round(e, 2),
        "players_connected": stats.players_connected,
        "servers_connected": stats.servers_connected,
        "connect_errors": stats.connect_errors,
        "attacks_sent": stats.attacks_sent,
        "attacks_acked": stats.attacks_acked,
        "attacks_sent_per_s": round(stats.attacks_sent / e, 1),
        "attacks_acked_per_s": round(stats.acked_in_window / e, 1),
        "attacks_refused": stats.attacks_refused,
        "attack_damage": stats.attack_damage,
        "sdk_hits": stats.sdk_hits,
        "sdk_hits_per_s": round(stats.sdk_hits / e, 1),
        "sdk_deltas": stats.sdk_deltas,
        "sdk_damage_acked": stats.sdk_damage_acked,
        "sdk_errors": stats.sdk_errors,
        "states": stats.states,
        "states_per_s": round(stats.states / e, 1),
        "final_version_seen": stats.version,
        "final_hp_seen": stats.hp,
        "status_seen": stats.status,
    }
    if log_entries is not None:
        fresh, missing = freshness_from_log(stats, log_entries)
        out["freshness_samples"] = len(fresh)
        out["freshness_missing"] = missing
        out["freshness_p50_ms"] = round(percentile(fresh, 50) * 1000, 1)
        out["freshness_p99_ms"] = round(percentile(fresh, 99) * 1000, 1)
    return out


def freshness_from_log(
    stats: FightStats, log_entries: list[tuple[str, dict[str, str]]]
) -> tuple[list[float], int]:
    """Freshness of the sampled hits: SDK sessions exactly, hosted shards per shard key."""
    merged: list[tuple[str, dict[str, str]]] = []
    for entry_id, f in log_entries:
        if f.get("kind") != "tick":
            merged.append((entry_id, f))
            continue
        d = json.loads(f.get("d") or "{}")
        # add per-shard-key totals for hosted shards ("shard:<key>") next to the sessions
        per_key: dict[str, int] = {}
        for sess, amount in d.items():
            parsed = parse_session(sess)
            key = parsed.shard_key if parsed is not None else sess
            per_key[f"shard:{key}"] = per_key.get(f"shard:{key}", 0) + int(amount)
        merged.append((entry_id, {**f, "d": json.dumps({**d, **per_key})}))
    return stats.tracker.compute(merged)


if __name__ == "__main__":
    _child_main()
