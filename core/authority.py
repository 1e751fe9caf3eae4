"""The global authority in Redis: the Lua scripts and typed calls over them, sync and async.

Each operation is built once as a :class:`Call` (script, keys, args, reply parser) and run
by a thin runner of either colour: :func:`run` / :func:`run_many` (redis-py: Celery tasks,
the admin, commands) or :func:`arun` / :func:`arun_then` (redis.asyncio: the sockets). The
runners send the call's EVALSHA words and hand the reply to its parser, so the sync and async
paths share every line that matters. Scripts live in ``core/lua/*.lua``, are read once at
import into one table of sources and SHA1s, and are loaded on a server only when it answers
NOSCRIPT.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from core import keys, messages
from core.clients import UNREACHABLE, AsyncClient, SyncClient, execute_pipelined
from core.limits import FULL_DAMAGE_BP, MAX_HELD_AMOUNT

LUA_DIR = Path(__file__).resolve().parent / "lua"
SCRIPT_NAMES = ("seed", "ingest", "tick", "transition", "heartbeat", "fence", "restore", "rate")
# Redis runs each script alone (no require): a line "-- #include <lib>" is replaced by
# core/lua/lib/<lib>.lua before the script is registered, so shared helpers have one copy.
_INCLUDE = re.compile(r"^-- #include (\w+)$", re.MULTILINE)


def _script_source(name: str) -> str:
    source = (LUA_DIR / f"{name}.lua").read_text()
    return _INCLUDE.sub(lambda m: (LUA_DIR / "lib" / f"{m.group(1)}.lua").read_text().rstrip("\n"), source)


_SOURCES = {name: _script_source(name) for name in SCRIPT_NAMES}
# The one script table: each script's SHA1, computed here as Redis computes it, names it in
# EVALSHA on every client, sync or async. Nothing is registered per client: a server that
# lacks a script (restart, SCRIPT FLUSH, a new cluster node) answers NOSCRIPT, and the
# runner loads it from the same source and sends the call once more.
_SHAS = {name: hashlib.sha1(source.encode()).hexdigest() for name, source in _SOURCES.items()}

# One element of a script's reply table: the scripts return strings and integers only (no
# nil inside a table, which would cut it short); strings arrive as bytes on a client
# without decode_responses.
ReplyItem = str | bytes | int
Reply = list[ReplyItem]
# What a script takes as ARGV (redis-py formats integers in decimal).
ScriptArg = str | int
# A command's words, as sent: an EVALSHA call, or a plain command after it (WAIT, WAITAOF).
Command = tuple[ScriptArg, ...]
Outcome = TypeVar("Outcome")


@dataclass(frozen=True)
class Call(Generic[Outcome]):
    """One script invocation: which script, its keys and args, and how to read the reply.

    Built once per operation by the ``*_call`` functions below and run by either colour of
    runner (:func:`run` / :func:`run_many` for Celery tasks, the admin and commands,
    :func:`arun` / :func:`arun_then` for the sockets): the runners only send
    :meth:`command` and hand the reply to ``parse``.
    """

    script: str
    keys: list[str]
    args: list[ScriptArg]
    parse: Callable[[Reply], Outcome]

    @property
    def source(self) -> str:
        """The script's Lua source (includes expanded), loaded on NOSCRIPT."""
        return _SOURCES[self.script]

    def command(self) -> Command:
        """The ``EVALSHA <sha> <numkeys> <keys...> <args...>`` words of this call."""
        return ("EVALSHA", _SHAS[self.script], len(self.keys), *self.keys, *self.args)


def _is_noscript(reply: object) -> bool:
    return isinstance(reply, redis.exceptions.NoScriptError)


def run(client: SyncClient, call: Call[Outcome]) -> Outcome:
    """Run ``call`` on a sync client (a redis-py client or a Redis Cluster client, which
    routes EVALSHA by the call's first key). A NOSCRIPT call ran nothing, so after the load
    it is sent once more without any risk of applying it twice."""
    try:
        reply = client.execute_command(*call.command())  # type: ignore[no-untyped-call]
    except redis.exceptions.NoScriptError:
        _load_script(client, call.source)
        reply = client.execute_command(*call.command())  # type: ignore[no-untyped-call]
    return call.parse(cast(Reply, reply))


async def arun(client: AsyncClient, call: Call[Outcome]) -> Outcome:
    """Async :func:`run`: the same command, the same reload on NOSCRIPT, the same parser."""
    try:
        reply = await client.execute_command(*call.command())
    except redis.exceptions.NoScriptError:
        await _aload_script(client, call.source)
        reply = await client.execute_command(*call.command())
    return call.parse(cast(Reply, reply))


def run_many(client: SyncClient, calls: Sequence[Call[Outcome]]) -> list[Outcome | Exception]:
    """Run ``calls`` in one pipeline (one round trip per node); each result is the parsed
    outcome, or the exception that call raised, so one broken boss does not fail the batch.

    The pipeline carries each call's plain EVALSHA :meth:`Call.command`: a Redis Cluster
    pipeline refuses redis-py ``Script`` calls, and on one Redis a pipeline holding scripts
    asks ``SCRIPT EXISTS`` first (an extra round trip on every call). Calls answered
    NOSCRIPT get their script loaded (on every master of a cluster) and only they are sent
    once more. On a cluster a node that is down fails only the calls of its slots (a
    connection error each).
    """
    if not calls:
        return []
    replies = _pipelined(client, calls)
    missing = {call.script for call, reply in zip(calls, replies) if _is_noscript(reply)}
    if missing:
        for name in missing:
            _load_script(client, _SOURCES[name])
        retry = [i for i, reply in enumerate(replies) if _is_noscript(reply)]
        for i, reply in zip(retry, _pipelined(client, [calls[i] for i in retry])):
            replies[i] = reply
    results: list[Outcome | Exception] = []
    for call, reply in zip(calls, replies, strict=True):
        if isinstance(reply, Exception):
            results.append(reply)
            continue
        try:
            results.append(call.parse(cast(Reply, reply)))
        except (ValueError, TypeError, IndexError) as exc:
            results.append(exc)
    return results


def _pipelined(client: SyncClient, calls: Sequence[Call[Outcome]]) -> list[object]:
    return execute_pipelined(client, [(call.keys[0], call.command()) for call in calls])


def _load_script(client: SyncClient, source: str) -> None:
    if not isinstance(client, RedisCluster):
        client.script_load(source)
        return
    # On every master that answers: one that is down gets it after its restart, on the
    # NOSCRIPT its first call then answers.
    for node in client.get_primaries():  # type: ignore[no-untyped-call]
        try:
            client.execute_command("SCRIPT LOAD", source, target_nodes=node)  # type: ignore[no-untyped-call]
        except UNREACHABLE:
            continue


async def _aload_script(client: AsyncClient, source: str) -> None:
    """Async :func:`_load_script`."""
    if not isinstance(client, AsyncRedisCluster):
        await client.script_load(source)
        return
    for node in client.get_primaries():
        try:
            await client.execute_command("SCRIPT LOAD", source, target_nodes=node)
        except UNREACHABLE:
            continue


def _then_replies(call: Call[Outcome], replies: list[object]) -> tuple[Outcome, list[object]]:
    """The parsed script reply and the raw replies of the commands after it.

    A command's reply may be an exception (the pipeline runs with ``raise_on_error=False``):
    the caller decides what an error there means. An error of the script itself is raised.
    """
    first = replies[0]
    if isinstance(first, Exception):
        raise first
    return call.parse(cast(Reply, first)), replies[1:]


async def arun_then(
    client: aioredis.Redis, call: Call[Outcome], commands: Sequence[Command]
) -> tuple[Outcome, list[object]]:
    """Run ``call`` and then ``commands`` on ONE connection, in one round trip.

    WAIT and WAITAOF count only the writes of the connection they are sent on, so they
    must follow the script on its connection: a non-transactional pipeline gives exactly
    that with a connection pool. Returns the parsed outcome and the commands' raw replies
    (an exception object for one that failed). A server that lost the script (NOSCRIPT
    after a restart or SCRIPT FLUSH) gets it loaded and everything is sent once more.
    """
    for attempt in range(2):
        pipe = client.pipeline(transaction=False)
        for words in (call.command(), *commands):
            pipe.execute_command(*words)
        replies: list[object] = await pipe.execute(raise_on_error=False)
        if attempt == 0 and _is_noscript(replies[0]):
            await _aload_script(client, call.source)
            continue
        break
    return _then_replies(call, replies)


# --- results -----------------------------------------------------------------


@dataclass(frozen=True)
class IngestOutcome:
    code: str  # ok | dup | gap | fenced | not_live | no_boss
    last_seq: int
    detail: str
    credited: dict[str, int] | None = None  # fenced: who the settlement credited (heldby)


@dataclass(frozen=True)
class TickOutcome:
    code: str  # applied | idle | early | no_boss
    version: int = 0
    hp: int = 0
    applied: int = 0
    overkill: int = 0
    old_phase: int = 0
    phase: int = 0
    defeated: bool = False
    ts_ms: int = 0
    phase_name: str = ""
    status: str = ""
    max_hp: int = 0
    slug: str = ""
    gen: int = 0
    mitigated: int = 0  # what the phase's damage-taken multiplier removed (docs/liveops.md)
    damage_taken_bp: int = FULL_DAMAGE_BP  # the multiplier of the phase the tick left
    healed: int = 0  # what regeneration added before the damage (docs/liveops.md)
    regen_per_s: int = 0  # the regeneration of the phase the tick left

    def state(self) -> BossState:
        """The state an ``applied`` tick left (the tick reads and returns every field of the
        state message, so it is built where the tick runs, without another round trip)."""
        return BossState(
            self.hp,
            self.max_hp,
            self.version,
            self.status,
            self.phase,
            self.phase_name,
            self.ts_ms,
            self.slug,
            self.gen,
            self.damage_taken_bp,
            self.regen_per_s,
        )


@dataclass(frozen=True)
class TransitionOutcome:
    code: str  # ok | refused | no_boss
    status: str = ""
    version: int = 0


@dataclass(frozen=True)
class HeartbeatOutcome:
    code: str  # ok | fenced | no_boss
    last_seq: int
    detail: str  # held amount (ok) or settlement (fenced)
    durable_seq: int = 0  # highest seq of the session in the SQL archive (ok)
    attributed: int = 0  # the part of held stored per player (ok; <= held)
    credited: dict[str, int] | None = None  # fenced: who the settlement credited (heldby)


@dataclass(frozen=True)
class FenceOutcome:
    code: str  # fenced | already | no_boss
    policy: str = ""
    amount: int = 0
    last_seq: int = 0
    credited_players: int = 0  # players a fair fence credited from the held breakdown
    credited_amount: int = 0  # their total (<= amount; the rest stays the shard's only)


def _text(v: ReplyItem | None) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass(frozen=True)
class SeedOutcome:
    code: str  # ok | exists
    status: str = ""
    incarnation: str = ""  # of the authority that exists ('' for one seeded without it)


def _parse_seed(r: Reply) -> SeedOutcome:
    code = _text(r[0])
    if code == "ok":
        return SeedOutcome(code, "live")
    return SeedOutcome(code, _text(r[1]), _text(r[2]) if len(r) > 2 else "")


def _parse_ingest(r: Reply) -> IngestOutcome:
    if _text(r[0]) == "fenced":
        return IngestOutcome("fenced", int(r[1]), _text(r[2]), _credited(r))
    return IngestOutcome(_text(r[0]), int(r[1]), _text(r[2]))


def _credited(r: Reply) -> dict[str, int]:
    """A fenced reply's 4th item: the stored held breakdown (``[player, damage, ...]``) as a map."""
    raw = _text(r[3]) if len(r) > 3 and r[3] is not None else ""
    flat = json.loads(raw) if raw else []
    return {str(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}


def _parse_tick(r: Reply) -> TickOutcome:
    code = _text(r[0])
    if code == "applied":
        return TickOutcome(
            code,
            int(r[1]),
            int(r[2]),
            int(r[3]),
            int(r[4]),
            int(r[5]),
            int(r[6]),
            bool(int(r[7])),
            int(r[8]),
            _text(r[9]),
            _text(r[10]),
            int(r[11]),
            _text(r[12] or ""),
            int(r[13]),
            int(r[14]),
            int(r[15]),
            int(r[16]),
            int(r[17]),
        )
    if code == "no_boss":
        return TickOutcome(code)
    return TickOutcome(code, version=int(r[1]), status=_text(r[2]))


def _parse_transition(r: Reply) -> TransitionOutcome:
    if _text(r[0]) == "no_boss":
        return TransitionOutcome("no_boss")
    return TransitionOutcome(_text(r[0]), _text(r[1]), int(r[2]))


def _parse_heartbeat(r: Reply) -> HeartbeatOutcome:
    if _text(r[0]) == "fenced":
        return HeartbeatOutcome("fenced", int(r[1]), _text(r[2]), credited=_credited(r))
    return HeartbeatOutcome(
        _text(r[0]),
        int(r[1]),
        _text(r[2]),
        int(r[3]) if len(r) > 3 else 0,
        int(r[4]) if len(r) > 4 else 0,
    )


def parse_settlement(record: str) -> tuple[str, int]:
    """``"fair:120"`` -> ``("fair", 120)``."""
    policy, _, amount = record.partition(":")
    return policy, int(amount or 0)


def _parse_fence(r: Reply) -> FenceOutcome:
    if _text(r[0]) == "no_boss":
        return FenceOutcome("no_boss")
    policy, amount = parse_settlement(_text(r[1]))
    credited = (int(r[3]), int(r[4])) if len(r) > 4 else (0, 0)
    return FenceOutcome(_text(r[0]), policy, amount, int(r[2]), *credited)


# --- calls -------------------------------------------------------------------


def seed_call(  # noqa: PLR0913 - one keyword per ARGV of seed.lua, all keyword-only
    *,
    boss_id: int,
    max_hp: int,
    phases: Sequence[tuple[int, str]],
    damage_taken: Sequence[int] = (),
    regen: Sequence[int] = (),
    opening: str,
    fight: int,
    slug: str,
    min_tick_ms: int,
    floors: Mapping[str, int],
    incarnation: str = "",
) -> Call[SeedOutcome]:
    """Create the authority of a boss going live (refused if it already exists).

    ``incarnation`` is the fight's identity, kept in SQL too: an authority that exists with
    another one was seeded by another database or fight (docs/authority.md). ``damage_taken``
    is every phase's damage-taken multiplier in basis points, the opening phase first
    (:func:`core.phases.phase_damage_taken`; empty: every phase takes full damage), ``regen``
    every phase's regeneration in HP per second (:func:`core.phases.phase_regen`; empty: none).
    """
    k = keys.boss_keys(boss_id)
    args: list[ScriptArg] = [
        max_hp,
        json.dumps(
            [
                [
                    hp,
                    name,
                    damage_taken[i + 1] if damage_taken else FULL_DAMAGE_BP,
                    regen[i + 1] if regen else 0,
                ]
                for i, (hp, name) in enumerate(phases)
            ]
        ),
        opening,
        fight,
        slug,
        min_tick_ms,
        incarnation,
        boss_id,
    ]
    for shard, epoch in floors.items():
        args += [shard, epoch]
    return Call("seed", [k.state, k.log, k.floor, k.unarchived], args, _parse_seed)


def ingest_call(
    *,
    boss_id: int,
    shard_key: str,
    epoch: int,
    seq: int,
    amount: int,
    breakdown: Mapping[str, int] | None = None,
) -> Call[IngestOutcome]:
    """Add one delta to the (boss, session) buffer exactly once."""
    k = keys.boss_keys(boss_id)
    args: list[ScriptArg] = [shard_key, epoch, seq, amount, keys.session_id(shard_key, epoch), boss_id]
    for player, dmg in (breakdown or {}).items():
        args += [player, dmg]
    return Call(
        "ingest",
        [
            k.state,
            k.buf,
            k.seq,
            k.settled,
            k.floor,
            k.hb,
            k.held,
            k.hbase,
            k.contrib,
            k.pbuf,
            k.dirty,
            k.heldby,
        ],
        args,
        _parse_ingest,
    )


def tick_call(*, boss_id: int, force: bool = False) -> Call[TickOutcome]:
    """Drain and apply every buffer of a boss (``force`` ignores its tick interval)."""
    k = keys.boss_keys(boss_id)
    return Call(
        "tick",
        [k.state, k.buf, k.log, k.dirty, k.seq, k.pbuf, k.players, k.unarchived],
        ["1" if force else "0", boss_id],
        _parse_tick,
    )


def transition_call(*, boss_id: int, to: str, allowed_from: tuple[str, ...]) -> Call[TransitionOutcome]:
    """Change the status if it is one of ``allowed_from``."""
    k = keys.boss_keys(boss_id)
    return Call("transition", [k.state, k.log, k.unarchived], [to, boss_id, *allowed_from], _parse_transition)


def heartbeat_call(  # noqa: PLR0913 - one keyword per heartbeat field, all keyword-only
    *,
    boss_id: int,
    shard_key: str,
    epoch: int,
    pending: int,
    inflight_seq: int = 0,
    inflight_amount: int = 0,
    breakdown: Mapping[str, int] | None = None,
    inflight_breakdown: Mapping[str, int] | None = None,
    sent: int | None = None,
) -> Call[HeartbeatOutcome]:
    """Record a session's sign of life and its unacknowledged damage.

    ``breakdown`` (validated: :func:`core.validation.held_breakdown_map`) is the per-player
    part of ``pending`` (or, without ``inflight_breakdown``, of everything held);
    ``inflight_breakdown`` the in-flight delta's, counted only while that delta is not
    accepted. Together they replace the breakdown stored before (none clears it), cut to fit
    the capped held amount (heartbeat.lua). ``sent`` (the client's highest sent seq) lets the
    script tell a stale heartbeat, which then only counts as a sign of life.
    """
    k = keys.boss_keys(boss_id)
    args: list[ScriptArg] = [
        shard_key,
        epoch,
        pending,
        inflight_seq,
        inflight_amount,
        keys.session_id(shard_key, epoch),
        MAX_HELD_AMOUNT,
        -1 if sent is None else sent,
        len(breakdown or {}),
    ]
    for player, dmg in [*(breakdown or {}).items(), *(inflight_breakdown or {}).items()]:
        args += [player, dmg]
    return Call(
        "heartbeat",
        [k.state, k.seq, k.settled, k.floor, k.hb, k.held, k.hbase, k.archived, k.heldby],
        args,
        _parse_heartbeat,
    )


def fence_call(*, boss_id: int, shard_key: str, epoch: int, policy: str) -> Call[FenceOutcome]:
    """Retire a session's epoch and settle its held damage under ``policy``.

    Under ``fair`` the held breakdown's players are credited through ``pbuf`` (exactly once:
    a re-run returns the first settlement and its credited count and amount).
    """
    k = keys.boss_keys(boss_id)
    session = keys.session_id(shard_key, epoch)
    return Call(
        "fence",
        [k.state, k.buf, k.seq, k.settled, k.held, k.hbase, k.contrib, k.dirty, k.heldby, k.pbuf],
        [shard_key, epoch, policy, session, keys.recovered_field(session), boss_id],
        _parse_fence,
    )


def _parse_rate(r: Reply) -> list[int]:
    return [int(v) for v in r]


def rate_call(
    *, boss_id: int, players: Sequence[str], attacks_per_second: int, max_players: int = 0
) -> Call[list[int]]:
    """Judge a batch of hosted attacks against each player's rate on this boss, across every
    ASGI process (rate.lua, GCRA with a burst of one second's attacks). One result per
    attack, in order: 0 = allowed, else the ms to wait before a retry would pass, or
    ``RATE_TOO_MANY_PLAYERS``: a new id while the boss's roster holds ``max_players`` (0: no cap)."""
    k = keys.BossKeys(boss_id)
    prefix = k.rate("")  # built once per batch, not once per attack
    rate = max(1, attacks_per_second)
    if max_players <= 0:
        return Call("rate", [prefix + p for p in players], [1_000_000 // rate, rate, 0], _parse_rate)
    return Call(
        "rate",
        [*(prefix + p for p in players), k.roster],
        [1_000_000 // rate, rate, max_players, *players],
        _parse_rate,
    )


RATE_TOO_MANY_PLAYERS = -1  # a rate_call verdict: the boss accepts no new player id


@dataclass(frozen=True)
class RestoreOutcome:
    code: str  # restored | already | foreign
    detail: str = ""  # the version written (restored, already) or the other incarnation


def _parse_restore(r: Reply) -> RestoreOutcome:
    return RestoreOutcome(_text(r[0]), _text(r[1]) if len(r) > 1 and r[1] is not None else "")


def restore_call(*, boss_id: int, incarnation: str, gen: int, snapshot: str) -> Call[RestoreOutcome]:
    """Replace the boss's whole authority with ``snapshot`` (JSON built from the SQL archive,
    see restore.lua), as generation ``gen`` of fight ``incarnation``, status ``recovering``."""
    k = keys.boss_keys(boss_id)
    return Call(
        "restore",
        [
            k.state,
            k.buf,
            k.seq,
            k.settled,
            k.floor,
            k.hb,
            k.held,
            k.hbase,
            k.contrib,
            k.pbuf,
            k.players,
            k.archived,
            k.log,
            k.dirty,
            k.unarchived,
        ],
        [incarnation, gen, boss_id, snapshot],
        _parse_restore,
    )


# --- plain reads -------------------------------------------------------------

STATE_FIELDS = (
    "hp",
    "max_hp",
    "version",
    "status",
    "phase",
    "phase_name",
    "last_tick_ms",
    "slug",
    "gen",
    "damage_taken_bp",
    "regen_per_s",
)


StateMessage = messages.StateFrame  # the protocol's ``state`` frame (core/messages.py)


@dataclass(frozen=True)
class BossState:
    """The authoritative state as clients see it."""

    hp: int
    max_hp: int
    version: int
    status: str
    phase: int
    phase_name: str
    ts_ms: int
    slug: str
    gen: int = 0  # restores of this fight's authority from the SQL archive (docs/durability.md)
    # the damage-taken multiplier of the current phase (basis points; docs/liveops.md)
    damage_taken_bp: int = FULL_DAMAGE_BP
    regen_per_s: int = 0  # the current phase's regeneration, HP per second

    def as_message(self) -> StateMessage:
        """The ``state`` message of the protocol (docs/protocol.md)."""
        return messages.state_frame(
            boss=self.slug,
            hp=self.hp,
            max_hp=self.max_hp,
            version=self.version,
            status=self.status,
            phase=self.phase_name,
            phase_index=self.phase,
            ts=self.ts_ms,
            gen=self.gen,
            damage_taken_bp=self.damage_taken_bp,
            regen_per_s=self.regen_per_s,
        )


def parse_state(values: Sequence[str | bytes | None]) -> BossState | None:
    """Build a :class:`BossState` from ``HMGET state STATE_FIELDS`` (None if absent)."""
    if values[0] is None:
        return None
    hp, max_hp, version, status, phase, phase_name, ts, slug, gen, bp, regen = values
    return BossState(
        _number(hp),
        _number(max_hp),
        _number(version),
        _text(status),
        _number(phase),
        _text(phase_name or ""),
        _number(ts),
        _text(slug or ""),
        int(gen or 0),
        FULL_DAMAGE_BP if bp is None else int(bp),  # an authority seeded before multipliers
        int(regen or 0),
    )


def _number(v: str | bytes | None) -> int:
    # seed.lua writes every numeric field with the state hash, so a missing one means the
    # hash was tampered with: say which, instead of int(None)'s TypeError.
    if v is None:
        raise ValueError("the state hash lacks a numeric field that seed.lua always writes")
    return int(v)


def read_state(client: SyncClient, boss_id: int) -> BossState | None:
    """hp, max_hp, version, status and phase in one round trip."""
    return parse_state(client.hmget(keys.BossKeys(boss_id).state, STATE_FIELDS))


async def aread_state(client: AsyncClient, boss_id: int) -> BossState | None:
    """Async :func:`read_state`."""
    return parse_state(await client.hmget(keys.BossKeys(boss_id).state, STATE_FIELDS))
