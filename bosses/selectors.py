"""Reads: bosses, their live state and ledgers. No writes here."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction

from django.db.models import QuerySet

from bosses.models import (
    BossEncounter,
    BossEvent,
    BossStatus,
    BossTemplate,
    Contribution,
    ContributionKind,
    RewardTable,
    SagaRun,
    SagaStatus,
)
from core import authority, keys, rewards
from core.clients import slot_client
from core.errors import NotFound, UnknownBoss
from core.redis import get_redis


def boss_get(*, slug: str) -> BossEncounter:
    """The boss with ``slug`` or :class:`UnknownBoss`."""
    try:
        return BossEncounter.objects.get(slug=slug)
    except BossEncounter.DoesNotExist:
        raise UnknownBoss(f"no boss with slug {slug!r}") from None


def boss_get_visible(*, slug: str, drafts: bool) -> BossEncounter:
    """:func:`boss_get` for a public page: a draft is :class:`UnknownBoss`, as if it did not
    exist, unless ``drafts`` (the viewer may watch fights: docs/security.md, "Drafts")."""
    boss = boss_get(slug=slug)
    if boss.status == BossStatus.DRAFT and not drafts:
        raise UnknownBoss(f"no boss with slug {slug!r}")
    return boss


def bosses_visible(*, drafts: bool) -> QuerySet[BossEncounter]:
    """Every boss for a public list: drafts only with ``drafts``."""
    rows = BossEncounter.objects.all()
    return rows if drafts else rows.exclude(status=BossStatus.DRAFT)


def template_get(*, slug: str) -> BossTemplate:
    """The template with ``slug`` or :class:`NotFound`."""
    template = BossTemplate.objects.select_related("reward_table").filter(slug=slug).first()
    if template is None:
        raise NotFound(f"no template with slug {slug!r}")
    return template


def boss_state(*, boss_id: int) -> authority.BossState | None:
    """The authoritative state in Redis, or None if the boss has no authority."""
    return authority.read_state(get_redis(), boss_id)


def boss_live_state_by_slug(*, slug: str) -> authority.BossState | None:
    """The authority's state of the live (or paused) boss with ``slug``, found in Redis alone
    (no SQL: for answering while the database is unreachable); None when no fight has it."""
    r = get_redis()
    for boss_id in sorted(int(i) for i in r.smembers(keys.LIVE_BOSSES)):
        state = authority.read_state(r, boss_id)
        if state is not None and state.slug == slug:
            return state
    return None


def boss_sagas_running(*, boss_id: int) -> int:
    """How many sagas of the boss are still running (a crash saga for a ``bye`` runs on a worker)."""
    return SagaRun.objects.filter(boss_id=boss_id, status=SagaStatus.RUNNING).count()


def live_boss_ids() -> list[int]:
    """Ids of the bosses the sync tick visits."""
    return sorted(int(i) for i in get_redis().smembers(keys.LIVE_BOSSES))


@dataclass(frozen=True)
class Ledger:
    """Everything the invariants talk about, read in one atomic MULTI."""

    state: dict[str, str]
    buffers: dict[str, int]
    settled: dict[str, str]
    log: list[tuple[str, dict[str, str]]]

    def number(self, field: str) -> int:
        return int(self.state.get(field, 0) or 0)


def boss_ledger(*, boss_id: int) -> Ledger:
    """State hash, buffers, settlements and the live event log as one snapshot."""
    k = keys.BossKeys(boss_id)
    pipe = slot_client(get_redis(), k.state).pipeline(transaction=True)  # one slot: a cluster runs it too
    pipe.hgetall(k.state)
    pipe.hgetall(k.buf)
    pipe.hgetall(k.settled)
    pipe.xrange(k.log)
    state, buf, settled, log = pipe.execute()
    return Ledger(state, {f: int(v) for f, v in buf.items()}, settled, log)


class EventLogUndecodable(ValueError):
    """An event-log entry of one boss that cannot be read (a field that is not the JSON or the
    number the tick writes). The archive of that boss stops before it; other bosses go on."""

    def __init__(self, *, boss: BossEncounter, version: int | str, field: str, problem: str) -> None:
        self.boss_id, self.slug, self.version, self.field = boss.pk, boss.slug, version, field
        super().__init__(
            f"event {version} of {boss.slug}: field {field!r} is not readable ({problem}); "
            "the archive of this boss stops before it"
        )


def _json_object(text: str) -> dict[str, int]:
    """A log entry's ``d``/``s``/``p``: a JSON object of whole numbers (``""`` -> ``{}``)."""
    value = json.loads(text) if text else {}
    if not isinstance(value, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value.values()
    ):
        raise ValueError("not an object of whole numbers")
    return value


def event_log_row(*, boss: BossEncounter, entry_id: str, fields: Mapping[str, str]) -> BossEvent:
    """The :class:`BossEvent` of one log entry; :class:`EventLogUndecodable` if it cannot be read."""
    field = "v"
    try:
        version = int(fields["v"])
        numbers = {}
        for field in ("hp", "applied", "overkill", "ts"):
            numbers[field] = int(fields[field])
        for field, default in (
            ("mitigated", "0"),
            ("bp", "10000"),
            ("healed", "0"),
            ("el", "0"),
            ("rc0", "0"),
            ("rg", "0"),
        ):  # absent before mechanics
            numbers[field] = int(fields.get(field, default))
        objects = {}
        for field in ("d", "s", "p"):
            objects[field] = _json_object(fields.get(field, ""))
        field = "kind"
        kind, status = fields["kind"], fields["status"]
    except (KeyError, ValueError) as exc:
        raise EventLogUndecodable(
            boss=boss, version=fields.get("v") or entry_id, field=field, problem=str(exc)[:120]
        ) from None
    return BossEvent(
        boss=boss,
        fight=boss.fight,
        version=version,
        kind=kind,
        status=status,
        hp=numbers["hp"],
        applied=numbers["applied"],
        overkill=numbers["overkill"],
        mitigated=numbers["mitigated"],
        damage_taken_bp=numbers["bp"],
        healed=numbers["healed"],
        regen_per_s=numbers["rg"],
        regen_elapsed_ms=numbers["el"],
        regen_carry=numbers["rc0"],
        deltas=objects["d"],
        seqs=objects["s"],
        players=objects["p"],
        ts_ms=numbers["ts"],
    )


def boss_archived_events(*, boss: BossEncounter) -> list[BossEvent]:
    """The archived event log of the boss's current fight, by version."""
    return list(BossEvent.objects.filter(boss=boss, fight=boss.fight).order_by("version"))


def boss_tick_times_ms(*, limit: int = keys.TICK_TIMES_KEEP) -> list[int]:
    """Start times of the most recent sync ticks, oldest first (for measurements)."""
    return [int(v) for v in reversed(get_redis().lrange(keys.TICK_TIMES, 0, limit - 1))]


# --- rewards (docs/rewards.md) ----------------------------------------------------------------

# Players read per HSCAN call and per SQL chunk: memory stays bounded by one batch.
PLAYERS_BATCH = 5_000


def reward_table_spec(*, table: RewardTable | None) -> rewards.Table:
    """The pure form of ``table`` (its tiers in order); :data:`core.rewards.DEFAULT_TABLE` for None."""
    if table is None:
        return rewards.DEFAULT_TABLE
    return rewards.Table(
        tiers=tuple(
            rewards.Tier(
                name=t.name,
                kind=t.kind,
                payload=t.payload,
                rank_from=t.rank_from,
                rank_to=t.rank_to,
                percent=None if t.percent is None else Fraction(t.percent),
                damage_min=t.damage_min,
            )
            for t in table.tiers.order_by("position", "id")
        ),
        min_damage=table.min_damage,
        last_hit_payload=table.last_hit_payload,
    )


def boss_live_players(*, boss_id: int, batch: int = PLAYERS_BATCH) -> Iterator[list[tuple[str, int]]]:
    """The boss's per-player damage in Redis, in HSCAN batches of about ``batch``.

    HSCAN may return a field twice (a rehash during the scan): callers dedupe (the saga's
    unique constraint does). Memory is one batch, whatever the number of players.
    """
    k = keys.BossKeys(boss_id)
    client = slot_client(get_redis(), k.players)
    cursor = 0
    while True:
        cursor, fields = client.hscan(k.players, cursor, count=batch)
        if fields:
            yield [(name, int(dmg)) for name, dmg in fields.items()]
        if cursor == 0:
            return


def fight_defeating_breakdown(*, boss: BossEncounter, fight: int) -> dict[str, int]:
    """Per-player damage of the tick that killed the boss in ``fight`` (the archived event)."""
    event = (
        BossEvent.objects.filter(boss=boss, fight=fight, kind="tick", status=BossStatus.DEFEATED)
        .order_by("version")
        .first()
    )
    return {p: int(d) for p, d in (event.players if event else {}).items()}


def fight_players_ranked(
    *, boss: BossEncounter, fight: int, min_damage: int = 1
) -> Iterator[tuple[int, str, int]]:
    """``(rank, player, damage)`` of a fight's ranked player contributions with at least
    ``min_damage``, best first, streamed in chunks."""
    return (
        Contribution.objects.filter(
            boss=boss, fight=fight, kind=ContributionKind.PLAYER, damage__gte=min_damage
        )
        .order_by("rank")
        .values_list("rank", "name", "damage")
        .iterator(chunk_size=PLAYERS_BATCH)
    )


def fight_players_eligible(*, boss: BossEncounter, fight: int, min_damage: int) -> int:
    """How many players of a fight's contributions have at least ``min_damage`` (and more than 0)."""
    return Contribution.objects.filter(
        boss=boss, fight=fight, kind=ContributionKind.PLAYER, damage__gte=max(min_damage, 1)
    ).count()


@dataclass(frozen=True)
class RewardPreview:
    """What a table would grant for a boss now: the source read and the pure preview."""

    source: str  # "contributions" (a finished fight) or "live" (the Redis players hash)
    fight: int
    preview: rewards.Preview
    last_hit_damage: int | None


def reward_preview(*, table: RewardTable | None, boss: BossEncounter, first_rows: int = 20) -> RewardPreview:
    """What ``table`` would grant against ``boss``'s current leaderboard.

    A fight with contributions (its victory saga ran) is read from them, streamed by rank;
    otherwise the live Redis ``players`` hash is read and ranked here (an admin page, not the
    saga: this holds one ``(name, damage)`` per player in memory).
    """
    spec = reward_table_spec(table=table)
    fight = boss.fight
    breakdown = fight_defeating_breakdown(boss=boss, fight=fight)
    last = rewards.last_hit_player(breakdown)
    has_rows = Contribution.objects.filter(boss=boss, fight=fight, kind=ContributionKind.PLAYER).exists()
    if has_rows:
        eligible = fight_players_eligible(boss=boss, fight=fight, min_damage=spec.min_damage)
        ranked = fight_players_ranked(boss=boss, fight=fight)
        last_damage = (
            Contribution.objects.filter(boss=boss, fight=fight, kind=ContributionKind.PLAYER, name=last)
            .values_list("damage", flat=True)
            .first()
        )
        source = "contributions"
    else:
        damage = {name: dmg for chunk in boss_live_players(boss_id=boss.pk) for name, dmg in chunk}
        eligible = rewards.eligible_count(spec, damage.values())
        ranked = iter(rewards.ranking(damage))
        last_damage = damage.get(last) if last else None
        source = "live"
    if last is not None and not rewards.is_eligible(spec, last_damage or 0):
        last = None
    preview = rewards.preview_build(spec, ranked, eligible=eligible, last_hit=last, first_rows=first_rows)
    return RewardPreview(source=source, fight=fight, preview=preview, last_hit_damage=last_damage)
