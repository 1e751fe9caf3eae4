"""Typed request and response bodies of /api/v1/ (the OpenAPI document is built from these)."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any, Literal

from ninja import Schema
from pydantic import ConfigDict, Field

SLUG_PATTERN = r"^[-a-zA-Z0-9_]+$"


class ErrorDetail(Schema):
    code: str = Field(description="Stable machine-readable code (docs/api.md lists them).")
    detail: str = Field(description="What went wrong, for humans.")
    field: str | None = Field(None, description="The input field at fault, when there is one.")


class Error(Schema):
    """Every refusal: ``{"error": {"code", "detail", "field"?}}``."""

    error: ErrorDetail


class BossLiveState(Schema):
    hp: int
    max_hp: int
    version: int
    status: str
    phase: str
    phase_index: int
    ts_ms: int


class BossOut(Schema):
    slug: str
    name: str
    status: str
    fight: int
    max_hp: int
    phases: str
    tick_interval_ms: int
    crash_policy: str
    heartbeat_interval_ms: int
    heartbeat_timeout_ms: int
    min_damage: int
    max_damage: int
    attacks_per_second: int
    allow_guests: bool
    template: str | None = Field(None, description="Slug of the template the settings came from.")
    starts_at: datetime | None
    ends_at: datetime | None
    next_spawn_at: datetime | None = Field(None, description="The next recurring spawn (docs/liveops.md).")
    defeated_at: datetime | None
    final_hp: int | None
    final_version: int | None
    created_at: datetime
    updated_at: datetime
    live: BossLiveState | None = Field(None, description="The authority in Redis (absent for a draft).")


class BossPage(Schema):
    count: int
    offset: int
    limit: int
    items: list[BossOut]


class _FightSettings(Schema):
    """The settings a boss and a template share (optional: unset means unchanged or default)."""

    model_config = ConfigDict(extra="forbid")

    phases: str | None = Field(None, max_length=400, examples=["75:Enraged, 50:Frenzy, 25:Last stand"])
    tick_interval_ms: int | None = None
    crash_policy: Literal["fair", "harsh"] | None = None
    heartbeat_interval_ms: int | None = None
    heartbeat_timeout_ms: int | None = None
    min_damage: int | None = None
    max_damage: int | None = None
    attacks_per_second: int | None = None
    allow_guests: bool | None = None


class _BossFields(_FightSettings):
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class BossCreate(_BossFields):
    """A new draft; unset optional fields take the platform's defaults."""

    name: str = Field(min_length=1, max_length=120)
    slug: str = Field(min_length=1, max_length=64, pattern=SLUG_PATTERN)
    max_hp: int


class BossPatch(_BossFields):
    """Fields to change; absent fields stay as they are (what a boss may change in each
    status: ``PATCH /bosses/{slug}``)."""

    name: str | None = Field(None, min_length=1, max_length=120)
    slug: str | None = Field(None, min_length=1, max_length=64, pattern=SLUG_PATTERN)
    max_hp: int | None = None


class TemplateOut(Schema):
    """A boss template: the settings fights start from (docs/liveops.md)."""

    slug: str
    name: str
    description: str
    max_hp: int
    phases: str
    tick_interval_ms: int
    crash_policy: str
    heartbeat_interval_ms: int
    heartbeat_timeout_ms: int
    min_damage: int
    max_damage: int
    attacks_per_second: int
    allow_guests: bool
    reward_table: str | None = Field(
        description="Name of the reward table (set in the admin); null: the default tiers."
    )
    created_at: datetime
    updated_at: datetime


class TemplatePage(Schema):
    count: int
    offset: int
    limit: int
    items: list[TemplateOut]


class _TemplateFields(_FightSettings):
    description: str | None = Field(None, max_length=2_000)


class TemplateCreate(_TemplateFields):
    name: str = Field(min_length=1, max_length=120)
    slug: str = Field(min_length=1, max_length=64, pattern=SLUG_PATTERN)
    max_hp: int


class TemplatePatch(_TemplateFields):
    """Fields to change; the fights already started from the template keep their configuration."""

    name: str | None = Field(None, min_length=1, max_length=120)
    max_hp: int | None = None


class BossFromTemplate(Schema):
    """A new draft boss with the template's settings."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    slug: str = Field(min_length=1, max_length=64, pattern=SLUG_PATTERN)
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class Schedule(Schema):
    """When the boss goes live and when it expires; null clears one."""

    model_config = ConfigDict(extra="forbid")

    starts_at: datetime | None
    ends_at: datetime | None


class Totals(Schema):
    applied: int | None = Field(description="Damage applied to HP.")
    overkill: int | None
    accepted: int | None = Field(description="Damage the authority accepted from shards.")
    players: int = Field(description="Ranked players (once the fight is settled).")
    player_damage: int


class VictoryInfo(Schema):
    status: str
    finished_at: datetime | None


class RewardTierOut(Schema):
    name: str
    kind: str
    rank_from: int | None
    rank_to: int | None
    percent: str | None
    damage_min: int | None
    payload: dict[str, Any]


class RewardTableOut(Schema):
    id: int
    name: str
    min_damage: int
    last_hit_payload: Any = None
    tiers: list[RewardTierOut]


class FightConfigOut(Schema):
    """The configuration a fight ran (or runs) with, frozen when it went live (docs/liveops.md)."""

    fight: int
    frozen: bool = Field(
        description="True once the fight went live; false: the boss's current settings (a fight "
        "that has not gone live, or one from before configurations were kept)."
    )
    frozen_at: datetime | None
    template: str | None = Field(description="Slug of the template the boss's settings came from.")
    name: str
    slug: str
    max_hp: int
    phases: str
    thresholds: list[tuple[int, str]] = Field(description="Each phase's HP threshold and name.")
    tick_interval_ms: int
    crash_policy: str
    heartbeat_interval_ms: int
    heartbeat_timeout_ms: int
    min_damage: int
    max_damage: int
    attacks_per_second: int
    allow_guests: bool
    reward_table: RewardTableOut | None
    starts_at: datetime | None
    ends_at: datetime | None


class Results(Schema):
    boss: str
    fight: int
    max_hp: int = Field(description="The fight's max HP (its frozen configuration's).")
    config: FightConfigOut
    status: str | None
    hp: int | None
    version: int | None
    defeated_at: datetime | None
    final: bool = Field(description="True once the fight is over (defeated, expired or a past fight).")
    totals: Totals
    victory: VictoryInfo | None


class LeaderRow(Schema):
    rank: int
    player: str
    damage: int


class Leaderboard(Schema):
    source: Literal["live", "final"] = Field(
        description="live: ranked from the running fight's authority; final: the settled ranking."
    )
    count: int
    offset: int
    limit: int
    truncated: bool
    items: list[LeaderRow]


class Grant(Schema):
    id: int
    boss: str
    fight: int
    player: str
    tier: str
    rank: int
    damage: int
    payload: dict[str, Any]
    granted_at: datetime
    claimed_at: datetime | None
    claim_id: str | None


class PlayerResult(Schema):
    player: str
    rank: int
    damage: int
    source: Literal["live", "final"]
    # every grant of the player in the fight (a rank tier and ``participant``, say), oldest
    # first; ``reward`` is the first of them (kept for clients written before ``rewards``)
    rewards: list[Grant]
    reward: Grant | None


class TimelineItem(Schema):
    # a crash saga is named by how its session ended: crash, or left / replaced / retired
    kind: Literal["status", "phase", "crash", "left", "replaced", "retired", "restore"]
    ts_ms: int
    version: int | None
    status: str | None = None
    phase: str | None = None
    hp: int | None = None
    shard: str | None = None
    policy: str | None = None
    amount: int | None = None


class Timeline(Schema):
    count: int
    offset: int
    limit: int
    items: list[TimelineItem]


class GrantPage(Schema):
    items: list[Grant]
    next: int = Field(description="The cursor for the next call (?after=next): the last id returned.")


class Claim(Schema):
    model_config = ConfigDict(extra="forbid")

    claim_id: str = Field(
        min_length=1,
        max_length=64,
        description="Chosen by the game (e.g. its own transaction id): a retry with the same id "
        "gets the same answer.",
    )


class ConfigChangeOut(Schema):
    field: str
    before: Any = Field(description="The fight's frozen value.")
    after: Any = Field(description="The boss's current value.")


class FightConfigDiff(Schema):
    config: FightConfigOut
    changes: list[ConfigChangeOut] = Field(
        description="What differs between this fight's configuration and the boss's current one."
    )


class UpcomingSpawnOut(Schema):
    boss: str
    schedule: int = Field(description="The schedule's id.")
    timezone: str
    at: datetime = Field(description="When the fight spawns (UTC).")
    ends_at: datetime | None = Field(description="When it expires; null: it runs until defeated.")


class UpcomingSpawns(Schema):
    days: int
    items: list[UpcomingSpawnOut]


class _ScheduleFields(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=120)
    template: str | None = Field(None, description="Slug of a template applied before each fight.")
    timezone: str | None = Field(None, max_length=64, examples=["Europe/Paris"])
    duration_s: int | None = Field(None, ge=1, description="Each fight expires this long after its spawn.")
    blackout_dates: list[str] | None = Field(None, examples=[["2026-12-24"]])
    notice_minutes: int | None = Field(None, ge=0, le=10_080)
    enabled: bool | None = None


class ScheduleCreate(_ScheduleFields):
    """A recurring spawn schedule (docs/liveops.md): an RFC 5545 RRULE on a time zone's wall clock."""

    rule: str = Field(max_length=400, examples=["FREQ=WEEKLY;BYDAY=SA,SU"])
    start_date: date
    start_time: time = Field(description="Local wall time of each spawn (unless the rule sets BYHOUR).")


class SchedulePatch(_ScheduleFields):
    rule: str | None = Field(None, max_length=400)
    start_date: date | None = None
    start_time: time | None = None


class ScheduleOut(Schema):
    id: int
    boss: str
    name: str
    template: str | None
    timezone: str
    rule: str
    start_date: date
    start_time: time
    duration_s: int | None
    blackout_dates: list[str]
    notice_minutes: int
    enabled: bool
    next_spawn_at: datetime | None


class SchedulePage(Schema):
    items: list[ScheduleOut]


class OccurrenceOut(Schema):
    at: datetime
    fight: int | None
    status: Literal["claimed", "spawned", "skipped"]
    detail: str
    attempts: int
    spawned_at: datetime | None


class OccurrencePage(Schema):
    count: int
    offset: int
    limit: int
    items: list[OccurrenceOut]


# --- shards ----------------------------------------------------------------------------


class ShardOut(Schema):
    key: str
    name: str
    region: str
    kind: Literal["hosted", "game_server"]
    status: str
    current_epoch: int
    token_rotated_at: datetime | None
    created_at: datetime


class ShardPage(Schema):
    count: int
    offset: int
    limit: int
    items: list[ShardOut]


class ShardCreate(Schema):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(description="lowercase letters, digits, '-' or '_' (max 64)")
    name: str = Field("", max_length=120)
    region: str = Field("", max_length=32)
    kind: Literal["hosted", "game_server"] = "game_server"


class ShardWithToken(Schema):
    shard: ShardOut
    token: str = Field(description="the shard's token: shown this once, stored only as a hash")


class ShardRetired(Schema):
    shard: ShardOut
    sessions_fenced: int


# --- webhook endpoints -------------------------------------------------------------------


class WebhookOut(Schema):
    id: int
    name: str
    url: str
    events: list[str]
    boss: str | None = Field(description="only this boss's events (its slug); null: every boss")
    active: bool
    timeout_ms: int
    secret_rotated_at: datetime | None
    created_at: datetime


class WebhookPage(Schema):
    count: int
    offset: int
    limit: int
    items: list[WebhookOut]


class WebhookPatch(Schema):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=120)
    url: str | None = Field(None, max_length=500)
    events: list[str] | None = None
    boss: str | None = Field(None, description="a boss slug; null: every boss")
    active: bool | None = None
    timeout_ms: int | None = None


class WebhookCreate(WebhookPatch):
    name: str = Field(max_length=120)  # type: ignore[assignment]
    url: str = Field(max_length=500)  # type: ignore[assignment]
    events: list[str]  # type: ignore[assignment]


class WebhookWithSecret(Schema):
    endpoint: WebhookOut
    secret: str = Field(description="the signing secret: shown this once (docs/webhooks.md)")


# --- reward tables -----------------------------------------------------------------------


class RewardTierIn(Schema):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=16, description="the tier code the game sees")
    kind: Literal["rank", "percentile", "damage"]
    payload: dict[str, Any] = Field(default_factory=dict)
    rank_from: int | None = None
    rank_to: int | None = Field(None, description="null: no upper bound")
    percent: float | None = Field(None, description="top X %, X in (0, 100]")
    damage_min: int | None = None


class RewardTierPlaced(RewardTierIn):
    position: int


class RewardTableIn(Schema):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=120)
    description: str = ""
    min_damage: int = Field(1, ge=1)
    last_hit_payload: dict[str, Any] | None = None
    tiers: list[RewardTierIn] = Field(
        description="tried in this order; the first that matches is the player's"
    )


class RewardTableFull(Schema):
    name: str
    description: str
    min_damage: int
    last_hit_payload: dict[str, Any] | None
    tiers: list[RewardTierPlaced]
    created_at: datetime
    updated_at: datetime


class RewardTablePage(Schema):
    count: int
    offset: int
    limit: int
    items: list[RewardTableFull]
