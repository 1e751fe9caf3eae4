"""The asyncio client SDK for game servers acting as shards (docs/sdk.md).

    client = ShardClient("ws://platform:8000", shard="eu-1", token=TOKEN)
    await client.start()
    client.watch("ragnaros")                 # optional: live state + predicted HP
    ...
    client.hit("ragnaros", 120, player="alice")   # in the game loop: O(1), no I/O, never blocks
    client.predicted_hp("ragnaros")          # truth minus this shard's unacknowledged damage
    ...
    await client.stop()                      # flushes what is held (bounded wait)

What it does for you:

* ``hit`` adds to an in-memory buffer per boss (worldboss_sdk.buffer); past the bound it raises
  ``BufferFull`` (the platform has been away long enough to fill it), never drops silently;
* a tick loop (``tick_ms``, default 100) sends one ``damage`` per boss per tick with the
  per-player breakdown and re-sends the SAME seq until it is acknowledged;
* a heartbeat loop reports ``pending``, the in-flight delta and who holds that damage
  (``LocalBuffer.held_parts``) every ``heartbeat_ms``;
* on a lost connection it reconnects with backoff and RESUMES its epoch, so an in-flight seq
  that had landed is acked as a duplicate and never applied twice (exactly-once);
* on ``fenced`` (the platform declared this session crashed) it drops an in-flight delta with
  ``seq <= last_seq`` and the ``settled`` amount, then reconnects for a new epoch and sends
  the rest from seq 1;
* the game never waits: sending, reconnecting and waiting for acks happen in background
  tasks; while the platform is slow or down the buffer just grows.

Only depends on ``websockets`` (no Django).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import websockets
from websockets.asyncio.client import ClientConnection, connect

from worldboss_sdk.buffer import DEFAULT_MAX_PLAYERS, BufferFull, LocalBuffer
from worldboss_sdk.protocol import (
    ENDED_STATUSES,
    MAX_DELTA_AMOUNT,
    PERMANENT_CLOSE_CODES,
    PLAYER_ID_PATTERN,
    RESERVED_PLAYER_PREFIXES,
    ErrorCode,
)

__all__ = ["BufferFull", "ClientStats", "ShardClient", "player_id_check"]

logger = logging.getLogger(__name__)

_PLAYER_ID = re.compile(PLAYER_ID_PATTERN)


def player_id_check(player: object) -> None:
    """ValueError unless ``player`` is an id a game server's breakdown may name: the platform's
    rule (1-64 letters, digits and ``_.:@-``, matched whole: no newline or other control
    character; none of the platform's own prefixes ``user:``, ``guest:``, ``sim:``). A delta
    naming another is refused whole, so it is refused here, at the hit."""
    if not isinstance(player, str) or _PLAYER_ID.fullmatch(player) is None:
        raise ValueError(f"player must be 1-64 letters, digits and _.:@-, got {player!r:.80}")
    if player.startswith(RESERVED_PLAYER_PREFIXES):
        raise ValueError(f"player {player!r} is a platform id ({', '.join(RESERVED_PLAYER_PREFIXES)}...)")


RECONNECT_BACKOFF_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
# Liveness of the shard socket: a ping every second, a link without a pong for a second is
# dead and is left at once, well inside the platform's heartbeat timeout (5 s by default);
# TCP's own retransmission back-off would take seconds more. A close handshake the platform
# does not answer within a second is given up (the connection is dropped).
PING_INTERVAL_S = 1.0
PING_TIMEOUT_S = 1.0
CLOSE_TIMEOUT_S = 1.0


@dataclass
class ClientStats:
    """Counters for logs and tests."""

    sent: int = 0  # damage frames sent (re-sends included)
    resent: int = 0  # of which re-sends of a seq already sent
    acked: int = 0  # damage acknowledged (amount)
    duplicates: int = 0  # acks flagged duplicate (a re-sent seq that had already landed)
    fences: int = 0
    connects: int = 0
    unanswered_closes: int = 0  # closes this client started that the platform never answered
    errors: dict[str, int] = field(default_factory=dict)


class _Boss:
    __slots__ = ("buffer", "ended", "last_heartbeat", "sent_at", "state", "version")

    def __init__(self, max_pending: int, max_players: int) -> None:
        self.buffer = LocalBuffer(max_pending=max_pending, max_players=max_players)
        self.sent_at = 0.0  # monotonic time the in-flight seq was last sent
        self.state: dict[str, Any] | None = None
        self.version = -1
        self.ended = False
        self.last_heartbeat = 0.0


class ShardClient:
    """One game server's connection to the platform as shard ``shard`` (see module docstring)."""

    def __init__(  # noqa: PLR0913 - the public constructor: keyword-only options with defaults
        self,
        url: str,
        *,
        shard: str,
        token: str,
        tick_ms: int = 100,
        heartbeat_ms: int = 1000,
        resend_ms: int | None = None,
        max_pending: int = MAX_DELTA_AMOUNT,
        max_players: int = DEFAULT_MAX_PLAYERS,
        open_timeout_s: float = 5.0,
        ping_interval_s: float | None = PING_INTERVAL_S,
        ping_timeout_s: float | None = PING_TIMEOUT_S,
    ) -> None:
        self.url = url.rstrip("/")
        self.shard = shard
        self._token = token
        self.tick_s = tick_ms / 1000
        self.heartbeat_s = heartbeat_ms / 1000
        self.resend_s = (resend_ms if resend_ms is not None else tick_ms) / 1000
        self.max_pending = max_pending
        self.max_players = max_players
        self.open_timeout_s = open_timeout_s
        self.ping_interval_s = ping_interval_s  # None: no keepalive pings (liveness is then TCP's)
        self.ping_timeout_s = ping_timeout_s
        self.epoch: int | None = None
        self.connected = asyncio.Event()
        self.stats = ClientStats()
        self.last_error: dict[str, Any] | None = None
        self._bosses: dict[str, _Boss] = {}
        self._ws: ClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._rotate = False  # fenced: switch to a new epoch once nothing is in flight
        self._releasing: set[str] | None = None  # bosses whose old session must be told "holds 0"
        self._stopping = False
        self._fatal: str | None = None
        self._bye: asyncio.Future[dict[str, Any]] | None = None
        self._keeps = False  # the platform reports durable_seq (its welcome said so)
        self.left: dict[str, Any] | None = None  # the bye_ack of a clean stop

    # --- the game's side: O(1), no I/O ----------------------------------------------------

    def hit(self, boss: str, amount: int, player: str | None = None) -> None:
        """Add one hit to ``boss``'s buffer. Raises ValueError (bad amount, or a player id the
        platform refuses: see :func:`player_id_check`) or BufferFull."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
            raise ValueError(f"amount must be a whole number >= 1, got {amount!r}")
        if player is not None:
            player_id_check(player)
        b = self._bosses.get(boss)
        if b is None:
            b = self._bosses[boss] = _Boss(self.max_pending, self.max_players)
            b.buffer.keeps = self._keeps
        if b.ended:
            return  # the fight is over: there is nothing left to damage
        b.buffer.add(amount, player)

    def unacked(self, boss: str) -> int:
        """This shard's damage to ``boss`` not acknowledged by the platform yet."""
        b = self._bosses.get(boss)
        return b.buffer.unacked if b else 0

    def state(self, boss: str) -> dict[str, Any] | None:
        """The newest ``state`` message seen for ``boss`` (needs :meth:`watch`)."""
        b = self._bosses.get(boss)
        return b.state if b else None

    def predicted_hp(self, boss: str) -> int | None:
        """Truth minus this shard's unacknowledged damage (None before the first state)."""
        b = self._bosses.get(boss)
        if b is None or b.state is None:
            return None
        return max(0, int(b.state["hp"]) - b.buffer.unacked)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the connection, tick and heartbeat tasks (returns at once; never waits for the platform)."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._connection_loop()), loop.create_task(self._tick_loop())]

    async def wait_connected(self, timeout_s: float = 10.0) -> None:
        """Wait until the platform welcomed this client (for scripts and tests)."""
        await asyncio.wait_for(self.connected.wait(), timeout_s)

    async def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until nothing is held for any boss (True) or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(b.buffer.unacked == 0 or b.ended for b in self._bosses.values()):
                return True
            await asyncio.sleep(self.tick_s / 2)
        return False

    async def stop(self, *, flush: bool = True, timeout_s: float = 10.0) -> bool:
        """Flush (bounded wait), then close everything. Returns whether all was acknowledged."""
        done = await self.flush(timeout_s) if flush else False
        self._stopping = True
        if done and self._ws is not None:
            await self._say_goodbye(self._ws)
        for task in [*self._tasks, *self._watchers.values()]:
            task.cancel()
        for task in [*self._tasks, *self._watchers.values()]:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if self._ws is not None:
            await self._ws.close()
        return done

    async def _say_goodbye(self, ws: ClientConnection) -> None:
        """Report an empty buffer, then ``bye``: the platform retires the session cleanly
        instead of declaring it crashed after the heartbeat timeout. A boss that is over is
        told too: an earlier heartbeat may have reported damage it will never send."""
        self._bye = asyncio.get_running_loop().create_future()
        try:
            for slug, b in self._bosses.items():
                if b.buffer.next_seq > 1:
                    await ws.send(
                        json.dumps({"type": "heartbeat", "boss": slug, "pending": 0, "inflight": None})
                    )
            await ws.send(json.dumps({"type": "bye"}))
            self.left = await asyncio.wait_for(self._bye, 2.0)
        except Exception as exc:  # the crash path covers a session that could not say goodbye
            logger.debug("shard %s: no clean goodbye: %r", self.shard, exc)

    async def __aenter__(self) -> ShardClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- state subscription -------------------------------------------------------------------

    def watch(self, boss: str) -> None:
        """Follow ``boss``'s live state over ``/ws/bosses/<slug>/`` (reconnects on its own)."""
        if boss not in self._bosses:
            self._bosses[boss] = _Boss(self.max_pending, self.max_players)
            self._bosses[boss].buffer.keeps = self._keeps
        if boss not in self._watchers:
            self._watchers[boss] = asyncio.get_running_loop().create_task(self._watch_loop(boss))

    async def _watch_loop(self, boss: str) -> None:
        attempt = 0
        b = self._bosses[boss]
        while not self._stopping:
            try:
                async with connect(
                    f"{self.url}/ws/bosses/{quote(boss)}/", compression=None, open_timeout=self.open_timeout_s
                ) as ws:
                    attempt = 0
                    b.version = -1  # the snapshot after a (re)connect is the truth
                    async for text in ws:
                        msg = json.loads(text)
                        version = int(msg.get("version", 0)) if msg.get("type") == "state" else -1
                        if version == 1 and b.version > 1:  # the boss was reset: a new fight
                            b.version, b.ended = -1, False
                        if msg.get("type") == "state" and version > b.version:
                            b.version = int(msg["version"])
                            b.state = msg
                            if msg.get("status") in ENDED_STATUSES:
                                b.ended = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("state socket of %s: %s", boss, exc)
            await asyncio.sleep(_backoff(attempt))
            attempt += 1

    # --- connection ---------------------------------------------------------------------------

    def drop_connection(self) -> None:
        """Abort the shard socket as a network failure would (tests, chaos drills)."""
        if self._ws is not None:
            self._ws.transport.abort()

    async def _connection_loop(self) -> None:
        attempt = 0
        while not self._stopping and self._fatal is None:
            try:
                async with connect(
                    self._connect_url(),
                    additional_headers={"Authorization": f"Bearer {self._token}"},
                    compression=None,
                    open_timeout=self.open_timeout_s,
                    ping_interval=self.ping_interval_s,
                    ping_timeout=self.ping_timeout_s,
                    close_timeout=CLOSE_TIMEOUT_S,
                ) as ws:
                    welcome = json.loads(await asyncio.wait_for(ws.recv(), self.open_timeout_s))
                    self._on_welcome(welcome)
                    self._ws = ws
                    attempt = 0
                    self.connected.set()
                    await self._receive(ws)
                    await self._leave(ws)
            except asyncio.CancelledError:
                raise
            except websockets.exceptions.InvalidStatus as exc:
                logger.warning("shard %s: handshake refused: %s", self.shard, exc)
            except Exception as exc:
                self._on_connection_lost(exc)
            finally:
                self._ws = None
                self.connected.clear()
            if not self._stopping and self._fatal is None and not self._rotate:
                await asyncio.sleep(_backoff(attempt))
                attempt += 1

    def _connect_url(self) -> str:
        """The shard socket's URL, resuming the current epoch unless a fence retires it.

        After a fence, a new epoch only once no delta is in flight under the old one (its
        fate is known only there: resuming lets the re-send be acked or deduped).
        """
        in_flight = any(b.buffer.inflight for b in self._bosses.values())
        resume = None if (self._rotate and not in_flight) else self.epoch
        return f"{self.url}/ws/shards/{quote(self.shard)}/" + (f"?resume={resume}" if resume else "")

    def _on_welcome(self, welcome: dict[str, Any]) -> None:
        """Take the session the first frame opens; raise ConnectionError when it is a refusal.

        A refusal for a bad token or an unknown shard is final (no reconnect).
        """
        if welcome.get("type") != "welcome":
            self._on_error(welcome)
            if welcome.get("code") in (ErrorCode.UNAUTHORIZED, ErrorCode.UNKNOWN_SHARD):
                self._fatal = welcome.get("code")
            raise ConnectionError(f"refused: {welcome.get('code')}: {welcome.get('detail')}")
        epoch = int(welcome["epoch"])
        if welcome.get("durable") is True:
            # The platform reports durable_seq: keep acknowledged deltas until then,
            # for a re-send if its authority comes back behind them.
            self._keeps = True
            for b in self._bosses.values():
                b.buffer.keeps = True
        if self.epoch is not None and epoch != self.epoch:
            for b in self._bosses.values():  # a new epoch numbers its seqs from 1
                if b.buffer.inflight is None:
                    b.buffer.next_seq = 1
        self.epoch = epoch
        self._rotate = False
        self._releasing = None
        self.stats.connects += 1
        for b in self._bosses.values():  # re-send at once what was in flight
            b.sent_at = 0.0

    async def _receive(self, ws: ClientConnection) -> None:
        """Handle the socket's frames until it closes, or until a fenced epoch can be left."""
        async for text in ws:
            self._on_frame(json.loads(text))
            if self._rotate and not any(b.buffer.inflight for b in self._bosses.values()):
                if self._releasing is None:
                    await self._release_sessions(ws)
                if not self._releasing:
                    break  # fenced: reconnect for a new epoch now that nothing is in flight

    async def _leave(self, ws: ClientConnection) -> None:
        """Close a fenced epoch's socket, reading (and dropping) what the platform still sends.

        Its answers to the frames sent during a partition may be queued unread: past
        websockets' queue bound it stops reading the socket, so the platform's close frame
        would never be read and the close would wait for its timeout before the new epoch.
        """
        closing = asyncio.ensure_future(ws.close())
        try:
            while True:
                await ws.recv()
        except websockets.exceptions.ConnectionClosed:
            pass
        await closing
        if ws.protocol.close_rcvd is None:
            self.stats.unanswered_closes += 1

    def _on_connection_lost(self, exc: Exception) -> None:
        """A lost or closed socket: stop for good on a permanent close code, else reconnect."""
        # the server's close frame, if it sent one (a lost network leaves none)
        rcvd = exc.rcvd if isinstance(exc, websockets.exceptions.ConnectionClosed) else None
        if rcvd is not None and rcvd.code in PERMANENT_CLOSE_CODES:
            self._fatal = f"closed with {rcvd.code}"
            logger.error("shard %s: %s; not reconnecting", self.shard, self._fatal)
        logger.debug("shard %s: connection lost: %r", self.shard, exc)

    async def _release_sessions(self, ws: ClientConnection) -> None:
        """Before leaving an epoch, tell each boss's old session it holds nothing any more.

        The buffers move to the new epoch; without this, a boss whose old session had
        reported ``pending`` would be settled again by a crash saga once that session went
        silent (a double apply under *fair*). The fenced boss answers ``fenced`` (ignored).
        """
        self._releasing = {slug for slug, b in self._bosses.items() if not b.ended and b.buffer.next_seq > 1}
        for slug in self._releasing:
            await ws.send(
                json.dumps(
                    {"type": "heartbeat", "boss": slug, "pending": 0, "inflight": None}, separators=(",", ":")
                )
            )

    def _on_frame(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        b = self._bosses.get(msg.get("boss", ""))
        if self._releasing and (
            kind == "heartbeat_ack" or (kind == "error" and msg.get("ref") == "heartbeat")
        ):
            self._releasing.discard(msg.get("boss", ""))
        if kind == "ack" and b is not None:
            if msg.get("duplicate"):
                self.stats.duplicates += 1
            inflight = b.buffer.inflight
            if inflight is not None and b.buffer.acked(int(msg["seq"])):
                self.stats.acked += inflight.amount
        elif kind == "heartbeat_ack" and b is not None:
            inflight = b.buffer.inflight
            if inflight is not None and inflight.seq <= int(msg.get("last_seq", 0)):
                b.buffer.acked(inflight.seq)  # it had landed; its ack was lost
                self.stats.acked += inflight.amount
            if isinstance(msg.get("durable_seq"), int):  # a platform that reports durability
                b.buffer.durable(msg["durable_seq"])
            if b.buffer.behind(int(msg.get("last_seq", 0))):
                b.sent_at = 0.0  # the authority lost acknowledged deltas: re-send them now
        elif kind == "bye_ack" and self._bye is not None and not self._bye.done():
            self._bye.set_result(msg)
        elif kind == "error":
            self._on_error(msg)

    def _on_error(self, msg: dict[str, Any]) -> None:
        code = msg.get("code", "error")
        self.stats.errors[code] = self.stats.errors.get(code, 0) + 1
        self.last_error = msg
        b = self._bosses.get(msg.get("boss", ""))
        if code == ErrorCode.FENCED and b is not None and msg.get("ref") in ("damage", "heartbeat"):
            if msg.get("ref") == "damage" and b.buffer.inflight is None:
                return  # a late duplicate of a fence already handled
            if b.buffer.next_seq == 1 and b.buffer.inflight is None:
                return
            credited = msg.get("credited")
            b.buffer.fenced(
                last_seq=int(msg.get("last_seq", 0)),
                settled=int(msg.get("settled", 0)),
                credited=credited if isinstance(credited, dict) else None,
            )
            self.stats.fences += 1
            self._rotate = True
        elif (code == ErrorCode.NOT_LIVE and b is not None and msg.get("status") in ENDED_STATUSES) or (
            code == ErrorCode.UNKNOWN_BOSS and b is not None
        ):
            b.ended = True
            b.buffer.drop_all()
        elif code == ErrorCode.SEQ_GAP and b is not None and b.buffer.inflight is not None:
            if msg.get("seq") == b.buffer.inflight.seq:  # not a late reply to an older send
                # Behind us: a reset (renumber) or a rollback (re-send what was kept).
                b.buffer.realign(int(msg.get("last_seq", 0)))
                b.sent_at = 0.0
        elif code in (ErrorCode.INVALID, ErrorCode.INVALID_AMOUNT, ErrorCode.MALFORMED) and b is not None:
            logger.error("shard %s: the platform refused a delta as invalid: %s", self.shard, msg)

    # --- tick and heartbeat -------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while not self._stopping:
            started = time.monotonic()
            ws = self._ws
            if ws is not None:
                try:
                    await self._send_due(ws, started)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the connection loop notices and reconnects
                    logger.debug("shard %s: send failed: %r", self.shard, exc)
            await asyncio.sleep(max(0.0, self.tick_s - (time.monotonic() - started)))

    async def _send_due(self, ws: ClientConnection, now: float) -> None:
        frames = []
        for slug, b in self._bosses.items():
            if b.ended:
                continue
            damage = self._damage_frame(slug, b, now)
            if damage is not None:
                frames.append(damage)
            if self._releasing is not None:
                continue  # leaving this epoch: its sessions were told they hold nothing
            beat = self._heartbeat_frame(slug, b, now)
            if beat is not None:
                frames.append(beat)
        for text in frames:
            await ws.send(text)

    def _damage_frame(self, slug: str, b: _Boss, now: float) -> str | None:
        """The delta due for ``slug``: the in-flight one once its re-send time has come, else a
        new one from the buffer (none while a fenced epoch is being replaced)."""
        buf = b.buffer
        delta = buf.inflight
        if delta is not None:
            if now - b.sent_at < self.resend_s:
                return None
            if b.sent_at:
                self.stats.resent += 1
        elif self._rotate:
            return None  # no new seq under an epoch that is being replaced
        else:
            delta = buf.take()
            if delta is None:
                return None
        frame: dict[str, object] = {"type": "damage", "boss": slug, "seq": delta.seq, "amount": delta.amount}
        if delta.breakdown:
            frame["breakdown"] = delta.breakdown
        b.sent_at = now
        self.stats.sent += 1
        return json.dumps(frame, separators=(",", ":"))

    def _heartbeat_frame(self, slug: str, b: _Boss, now: float) -> str | None:
        """The heartbeat due for ``slug`` (every ``heartbeat_s`` once the boss has a session)."""
        buf = b.buffer
        if now - b.last_heartbeat < self.heartbeat_s or not (buf.next_seq > 1 or buf.unacked):
            return None
        inflight = buf.inflight
        # Who the held damage belongs to: a fair crash saga credits these players. The
        # in-flight delta's players go with it: the platform counts them only while that
        # delta is not accepted, so each player's credit is exact.
        held_by, flight = buf.held_parts()
        beat: dict[str, object] = {
            "type": "heartbeat",
            "boss": slug,
            "pending": buf.waiting,
            # the highest seq sent so far: a heartbeat the platform gets after a later delta
            # (delayed on a socket this client left) is then known to be stale
            "sent": buf.next_seq - 1,
            "inflight": (
                {"seq": inflight.seq, "amount": inflight.amount, "breakdown": flight} if inflight else None
            ),
        }
        if held_by:
            beat["breakdown"] = held_by
        b.last_heartbeat = now
        return json.dumps(beat, separators=(",", ":"))


def _backoff(attempt: int) -> float:
    base = RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)]
    return base * (0.5 + random.random())
