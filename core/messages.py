"""Every frame and body of the live protocol (docs/protocol.md), typed, with one builder each.

A sender never writes a frame as a dict literal: it calls the builder here, so a frame has
one shape wherever it is sent from (the tick, the admin, a consumer, the state API, the
bench). The TypedDicts are the schema: the tests check every frame a test receives over a
socket against them (tests/support/frame_schema.py), and docs/protocol.md's "Frame fields"
tables are checked against them (tests/test_docs.py).

Django-free (the import-linter contract of the core): builders take plain values.

No ``from __future__ import annotations`` here: Python 3.11 reads ``NotRequired`` of a
TypedDict only from real annotations, not from strings.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, NotRequired, Protocol, TypedDict

from worldboss_sdk.protocol import PROTOCOL_VERSION

# --- /ws/bosses/<slug>/ (and the state embedded in the ops feed) -----------------------


class StateFrame(TypedDict):
    """A boss's absolute state; ``ts`` is None for a boss that never went live."""

    type: Literal["state"]
    boss: str
    hp: int
    max_hp: int
    version: int
    status: str
    phase: str
    phase_index: int
    ts: int | None
    gen: int
    damage_taken_bp: int  # the current phase's damage-taken multiplier (10,000 = full damage)
    regen_per_s: int  # the current phase's regeneration, HP per second


class PhaseFrame(TypedDict):
    """The boss entered another phase (after the ``state`` of the same version)."""

    type: Literal["phase"]
    boss: str
    phase: str
    phase_index: int
    version: int
    ts: int


class LeaderRow(TypedDict):
    rank: int
    player: str
    damage: int


class DefeatedFrame(TypedDict):
    """The victory saga's announcement: final version, defeat time and the top of the ranking."""

    type: Literal["defeated"]
    boss: str
    version: int
    ts: int
    fight: int
    leaderboard: list[LeaderRow]
    players: int
    shards: int


class ExpiredFrame(TypedDict):
    type: Literal["expired"]
    boss: str
    version: int


class HelloFrame(TypedDict):
    """First frame of ``/ws/bosses/`` (channel ``boss``) and ``/ws/ops/`` (channel ``ops``)."""

    type: Literal["hello"]
    v: int
    channel: Literal["boss", "ops"]
    boss: NotRequired[str]
    name: NotRequired[str]
    refresh_ms: NotRequired[int]


class PongFrame(TypedDict):
    """Reply to ``ping``: ``id`` echoed (viewer, gateway), ``version`` the newest state sent,
    ``server_ms`` the authority's clock (Redis ``TIME``) when the operator feed answered."""

    type: Literal["pong"]
    id: NotRequired[int | str | None]
    version: NotRequired[int]
    server_ms: NotRequired[int]


class ErrorFrame(TypedDict):
    """A refusal; ``code`` is an ``ErrorCode``, the rest are the documented extras (``ref``,
    ``boss``, ``seq`` and ``id`` echo the refused frame's fields when they were scalars)."""

    type: Literal["error"]
    code: str
    detail: str
    field: NotRequired[str]
    ref: NotRequired[int | str]
    boss: NotRequired[int | str]
    seq: NotRequired[int | str]
    id: NotRequired[int | str]
    close: NotRequired[int]
    last_seq: NotRequired[int]
    policy: NotRequired[str]
    settled: NotRequired[int]
    credited: NotRequired[dict[str, int]]
    status: NotRequired[str]
    retry_after_ms: NotRequired[int]
    pending: NotRequired[int]
    epoch: NotRequired[int]
    shard: NotRequired[str]


# --- /ws/shards/<shard>/ ---------------------------------------------------------------


class WelcomeFrame(TypedDict):
    """A session: a game server's (``epoch``, ``resumed``, ``durable``) or a player's (``player``)."""

    type: Literal["welcome"]
    v: int
    role: Literal["server", "player"]
    shard: str
    epoch: NotRequired[int]
    resumed: NotRequired[bool]
    durable: NotRequired[bool]
    player: NotRequired[str]


class AckFrame(TypedDict):
    type: Literal["ack"]
    boss: str
    seq: int
    duplicate: bool


class HeartbeatAckFrame(TypedDict):
    type: Literal["heartbeat_ack"]
    boss: str
    last_seq: int
    held: int
    durable_seq: int


class ByeAckFrame(TypedDict):
    type: Literal["bye_ack"]
    epoch: int | None
    settled: dict[str, int]


class AttackAckFrame(TypedDict):
    type: Literal["attack_ack"]
    boss: str
    damage: int
    id: int | str | None


# --- /ws/ops/ ----------------------------------------------------------------------------


class OpsFrame(TypedDict):
    """Everything the boss dashboard shows (docs/dashboard.md); ``series`` only on connect."""

    type: Literal["ops"]
    boss: str
    name: str
    server_ms: int
    state: StateFrame
    ledger: dict[str, int]
    buffered: int
    dps: dict[str, Any]
    tick: dict[str, Any]
    shards: list[dict[str, Any]]
    health: dict[str, int]
    events: list[dict[str, Any]]
    sagas: list[dict[str, Any]]
    config: dict[str, Any]
    series: NotRequired[list[list[int]]]


class OverviewRow(TypedDict):
    slug: str
    name: str
    status: str
    hp: int
    max_hp: int
    version: int
    phase: str
    dps: float | None
    buffered: int
    tick_lag_ms: int | None
    shards: dict[str, int]
    archive_problem: str | None


class OverviewFrame(TypedDict):
    """The operators' overview of every boss (``/ws/ops/``)."""

    type: Literal["overview"]
    server_ms: int
    beat_age_ms: int | None
    bosses: list[OverviewRow]


# --- HTTP bodies ---------------------------------------------------------------------------


class PublicShard(TypedDict):
    key: str
    name: str
    region: str
    status: str


class StateApiBody(StateFrame):
    """``GET /api/bosses/<slug>/state``: the snapshot plus the boss's name, public shards and
    next recurring spawn (ISO 8601, UTC; null: none scheduled, or the database is down)."""

    name: str
    shards: list[PublicShard]
    next_spawn_at: str | None


class ApiLiveState(TypedDict):
    """``live`` of a boss in the backend API (/api/v1/, docs/api.md); its field is ``ts_ms``."""

    hp: int
    max_hp: int
    version: int
    status: str
    phase: str
    phase_index: int
    ts_ms: int


# Every frame a server sends, by its ``type``.
FRAMES: dict[str, type] = {
    "state": StateFrame,
    "phase": PhaseFrame,
    "defeated": DefeatedFrame,
    "expired": ExpiredFrame,
    "hello": HelloFrame,
    "pong": PongFrame,
    "error": ErrorFrame,
    "welcome": WelcomeFrame,
    "ack": AckFrame,
    "heartbeat_ack": HeartbeatAckFrame,
    "bye_ack": ByeAckFrame,
    "attack_ack": AttackAckFrame,
    "ops": OpsFrame,
    "overview": OverviewFrame,
}

# The HTTP bodies that are not frames, by name (docs/protocol.md, docs/api.md).
BODIES: dict[str, type] = {"state_api": StateApiBody, "api_live": ApiLiveState}


# --- builders ------------------------------------------------------------------------------


def state_frame(  # noqa: PLR0913 - one keyword per field of the frame, all keyword-only
    *,
    boss: str,
    hp: int,
    max_hp: int,
    version: int,
    status: str,
    phase: str,
    phase_index: int,
    ts: int | None,
    gen: int,
    damage_taken_bp: int = 10_000,
    regen_per_s: int = 0,
) -> StateFrame:
    """The ``state`` frame (``damage_taken_bp``: the current phase's damage-taken
    multiplier in basis points, 10,000 = full damage; ``regen_per_s``: its regeneration in HP
    per second; docs/liveops.md, "Mechanics")."""
    return {
        "type": "state",
        "boss": boss,
        "hp": hp,
        "max_hp": max_hp,
        "version": version,
        "status": status,
        "phase": phase,
        "phase_index": phase_index,
        "ts": ts,
        "gen": gen,
        "damage_taken_bp": damage_taken_bp,
        "regen_per_s": regen_per_s,
    }


class BossRecord(Protocol):
    """What the SQL record of a boss gives a ``state`` frame (a model row or a cached copy)."""

    slug: str
    max_hp: int
    status: str
    final_hp: int | None
    final_version: int | None
    authority_gen: int
    updated_at: datetime | None


def record_state_frame(*, record: BossRecord) -> StateFrame:
    """The ``state`` of a boss whose authority holds nothing, from its SQL record: the final HP
    and version if the fight ended, full HP otherwise; ``ts`` when the record was written
    (None for a draft: it never went live)."""
    written_at = record.updated_at
    return state_frame(
        boss=record.slug,
        hp=record.final_hp if record.final_hp is not None else record.max_hp,
        max_hp=record.max_hp,
        version=record.final_version or 0,
        status=record.status,
        phase="",
        phase_index=0,
        ts=int(written_at.timestamp() * 1000)
        if written_at is not None and record.status != "draft"
        else None,
        gen=record.authority_gen,
    )


def phase_frame(*, boss: str, phase: str, phase_index: int, version: int, ts: int) -> PhaseFrame:
    """The ``phase`` event."""
    return {
        "type": "phase",
        "boss": boss,
        "phase": phase,
        "phase_index": phase_index,
        "version": version,
        "ts": ts,
    }


def defeated_frame(
    *,
    boss: str,
    version: int,
    ts: int,
    fight: int,
    leaderboard: Sequence[LeaderRow],
    players: int,
    shards: int,
) -> DefeatedFrame:
    """The ``defeated`` event."""
    return {
        "type": "defeated",
        "boss": boss,
        "version": version,
        "ts": ts,
        "fight": fight,
        "leaderboard": list(leaderboard),
        "players": players,
        "shards": shards,
    }


def expired_frame(*, boss: str, version: int) -> ExpiredFrame:
    """The ``expired`` event."""
    return {"type": "expired", "boss": boss, "version": version}


def boss_hello_frame(*, boss: str, name: str) -> HelloFrame:
    """The ``hello`` of ``/ws/bosses/<slug>/``."""
    return {"type": "hello", "v": PROTOCOL_VERSION, "channel": "boss", "boss": boss, "name": name}


def ops_hello_frame(*, refresh_ms: int, boss: str | None = None) -> HelloFrame:
    """The ``hello`` of the operator feeds: one boss's (``boss``) or the overview's."""
    frame: HelloFrame = {"type": "hello", "v": PROTOCOL_VERSION, "channel": "ops"}
    if boss is not None:
        frame["boss"] = boss
    frame["refresh_ms"] = refresh_ms
    return frame


def pong_frame(
    *,
    version: int | None = None,
    id: int | str | None = None,
    echo_id: bool = False,
    server_ms: int | None = None,
) -> PongFrame:
    """``pong``: ``version`` when the endpoint streams states; ``id`` when it echoes ids;
    ``server_ms`` when the client measures its clock's offset (the operator dashboard)."""
    frame: PongFrame = {"type": "pong"}
    if version is not None:
        frame["version"] = version
    if server_ms is not None:
        frame["server_ms"] = server_ms
    if echo_id:
        frame["id"] = id
    return frame


def error_body(*, code: str, detail: str, extras: Mapping[str, Any] | None = None) -> ErrorFrame:
    """The ``error`` frame (and the state API's 404): extras that are None are left out."""
    frame: ErrorFrame = {"type": "error", "code": code, "detail": detail}
    for key, value in (extras or {}).items():
        if key not in frame and value is not None:
            frame[key] = value  # type: ignore[literal-required]  # the extras are the documented keys
    return frame


def server_welcome_frame(*, shard: str, epoch: int, resumed: bool) -> WelcomeFrame:
    """A game server's ``welcome``: its epoch; ``durable`` says heartbeat_ack has durable_seq."""
    return {
        "type": "welcome",
        "v": PROTOCOL_VERSION,
        "role": "server",
        "shard": shard,
        "epoch": epoch,
        "resumed": resumed,
        "durable": True,
    }


def player_welcome_frame(*, shard: str, player: str) -> WelcomeFrame:
    """A hosted player's ``welcome``."""
    return {"type": "welcome", "v": PROTOCOL_VERSION, "role": "player", "shard": shard, "player": player}


def ack_frame(*, boss: str, seq: int, duplicate: bool) -> AckFrame:
    """``ack`` of a ``damage`` frame."""
    return {"type": "ack", "boss": boss, "seq": seq, "duplicate": duplicate}


def heartbeat_ack_frame(*, boss: str, last_seq: int, held: int, durable_seq: int) -> HeartbeatAckFrame:
    """``heartbeat_ack``."""
    return {
        "type": "heartbeat_ack",
        "boss": boss,
        "last_seq": last_seq,
        "held": held,
        "durable_seq": durable_seq,
    }


def bye_ack_frame(*, epoch: int | None, settled: Mapping[str, int]) -> ByeAckFrame:
    """``bye_ack``: what each boss settled of the session."""
    return {"type": "bye_ack", "epoch": epoch, "settled": dict(settled)}


def attack_ack_frame(*, boss: str, damage: int, id: int | str | None) -> AttackAckFrame:
    """``attack_ack``: the damage drawn, ``id`` echoed."""
    return {"type": "attack_ack", "boss": boss, "damage": damage, "id": id}


def ops_frame(  # noqa: PLR0913 - one keyword per field of the frame, all keyword-only
    *,
    boss: str,
    name: str,
    server_ms: int,
    state: StateFrame,
    ledger: Mapping[str, int],
    buffered: int,
    dps: dict[str, Any],
    tick: dict[str, Any],
    shards: list[dict[str, Any]],
    health: Mapping[str, int],
    events: list[dict[str, Any]],
    sagas: list[dict[str, Any]],
    config: dict[str, Any],
    series: list[list[int]] | None = None,
) -> OpsFrame:
    """The ``ops`` frame of ``/ws/ops/bosses/<slug>/``."""
    frame: OpsFrame = {
        "type": "ops",
        "boss": boss,
        "name": name,
        "server_ms": server_ms,
        "state": state,
        "ledger": dict(ledger),
        "buffered": buffered,
        "dps": dps,
        "tick": tick,
        "shards": shards,
        "health": dict(health),
        "events": events,
        "sagas": sagas,
        "config": config,
    }
    if series is not None:
        frame["series"] = series
    return frame


def overview_frame(*, server_ms: int, beat_age_ms: int | None, bosses: list[OverviewRow]) -> OverviewFrame:
    """The ``overview`` frame of ``/ws/ops/``."""
    return {"type": "overview", "server_ms": server_ms, "beat_age_ms": beat_age_ms, "bosses": bosses}


def state_api_body(
    *, state: StateFrame, name: str, shards: Sequence[PublicShard], next_spawn_at: datetime | None
) -> StateApiBody:
    """``GET /api/bosses/<slug>/state``."""
    return {
        **state,
        "name": name,
        "shards": list(shards),
        "next_spawn_at": next_spawn_at.isoformat() if next_spawn_at is not None else None,
    }


def api_live_state(*, state: StateFrame) -> ApiLiveState:
    """A boss's ``live`` in the backend API: the ``state`` frame's fields, ``ts`` named ``ts_ms``."""
    return {
        "hp": state["hp"],
        "max_hp": state["max_hp"],
        "version": state["version"],
        "status": state["status"],
        "phase": state["phase"],
        "phase_index": state["phase_index"],
        "ts_ms": state["ts"] or 0,
    }
