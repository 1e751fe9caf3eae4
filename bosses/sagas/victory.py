"""The victory saga: exactly once per fight, resumable after a crash at any step.

It runs on the shared saga runner (:mod:`bosses.sagas.runner`): each step does its database
work and appends its record to ``SagaRun.steps`` in ONE transaction, so a process that dies
inside a step leaves nothing of it behind and a re-run does it again; a recorded step is never
done twice. The unique constraints on :class:`Contribution` and :class:`RewardGrant` are a
second guard (``ignore_conflicts``), so even two concurrent runs grant once.

It streams: no step holds more than one batch of players (``PLAYERS_BATCH``) in memory, and
``SagaRun.detail`` stays small whatever the number of players (docs/rewards.md).

Steps (docs/sagas.md):

1. ``freeze``               the authority is ``defeated`` (ingest refuses damage since the
                            defeating tick); snapshot the final state and the per-shard totals
                            into ``SagaRun.detail``, and copy the per-player totals from Redis
                            (HSCAN, in batches) straight into unranked :class:`Contribution`
                            rows. Every later step reads SQL, never Redis again, so a re-run
                            computes exactly the same rows.
2. ``persist_final_state``  the encounter row: status, final hp/version, defeat time.
3. ``contributions``        one :class:`Contribution` per shard; every player row ranked in SQL
                            (``ROW_NUMBER() OVER (ORDER BY damage DESC, name)``).
4. ``leaderboard``          the top ``LEADERBOARD_SIZE`` players, stored on the saga.
5. ``rewards``              the boss's reward table (or the default tiers) evaluated row by
                            row in rank order: at most one tier per player plus the ``last_hit``
                            extra (unique per boss, fight, player, tier).
6. ``announce``             one ``defeated`` message with the leaderboard (a crash between the
                            PUBLISH and its record repeats the same message, same version:
                            clients drop a version they already show).

Fault injection (tests, drills): ``LIVEOPS_FAILPOINTS="victory.rewards.inside,..."`` makes the
process exit at once with status 137 (as ``kill -9`` would) at each named point:
``victory.<step>.before`` (nothing of the step done) and ``victory.<step>.inside`` (the step's
work done, its transaction not committed; for ``announce``: published, not recorded).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone

from bosses import signals
from bosses.broadcast import messages_publish
from bosses.models import (
    BossEncounter,
    BossEvent,
    BossStatus,
    Contribution,
    ContributionKind,
    RewardGrant,
    SagaKind,
    SagaRun,
    SagaStatus,
)
from bosses.sagas.runner import SagaStep, SagaUnrecoverable, saga_last_progress, saga_run, steps_done
from bosses.selectors import (
    PLAYERS_BATCH,
    boss_live_players,
    fight_defeating_breakdown,
    fight_players_eligible,
    fight_players_ranked,
    reward_table_spec,
)
from bosses.services import SQL_BATCH_BOSSES, event_log_archive, fight_reward_table_record, victory_enqueue
from bosses.signals import fight_event_send
from core import authority, keys, rewards
from core import messages as wire_messages
from core.clients import slot_client
from core.errors import InvalidTransition, UnknownBoss
from core.redis import get_redis

LEADERBOARD_SIZE = 10
VICTORY_STEPS = ("freeze", "persist_final_state", "contributions", "leaderboard", "rewards", "announce")
# Runs of one victory saga before it is failed: more than the task's 21 tries (autoretry,
# max_retries=20), so a burst of transient errors leaves the resume sweep a few runs more.
VICTORY_MAX_ATTEMPTS = 25
# The default tiers (a boss without a reward table): core.rewards.DEFAULT_TABLE.
TIER_CHAMPION, TIER_ELITE, TIER_PARTICIPANT = (t.name for t in rewards.DEFAULT_TABLE.tiers)


def victory_saga_key(*, boss_id: int, fight: int) -> str:
    """The idempotency key of a fight's victory saga."""
    return f"victory:{boss_id}:{fight}"


def reward_tier(rank: int) -> str:
    """The default tier (no reward table) of the player ranked ``rank`` (1 = most damage)."""
    tier = rewards.tier_for(rewards.DEFAULT_TABLE, rank=rank, damage=1, eligible=rank)
    assert tier is not None  # the default table matches every rank
    return tier.name


def _ranked(damage: dict[str, int]) -> list[tuple[int, str, int]]:
    """``[(rank, name, damage)]``: most damage first, ties by name (deterministic)."""
    return rewards.ranking(damage)


def _name_order_sql() -> str:
    """``name`` ordered by code point on every backend (Python's order; PostgreSQL's default
    collation would follow the locale): ties by name rank the same in SQL and in Python."""
    return 'name COLLATE "C"' if connection.vendor == "postgresql" else "name"


def _players_rank(*, boss: BossEncounter, fight: int) -> int:
    """Rank a fight's player contributions in SQL (1 = most damage, ties by name); returns rows."""
    # Only identifiers of the model and fixed SQL are formatted in; the values are parameters.
    table = connection.ops.quote_name(Contribution._meta.db_table)
    sql = (
        f'UPDATE {table} SET "rank" = ranked.rn FROM ('
        f"  SELECT id, ROW_NUMBER() OVER (ORDER BY damage DESC, {_name_order_sql()}) AS rn"
        f"  FROM {table} WHERE boss_id = %s AND fight = %s AND kind = %s"
        f") AS ranked WHERE {table}.id = ranked.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [boss.pk, fight, ContributionKind.PLAYER])
        return cursor.rowcount


# The grant feed (GET /api/v1/rewards?after=<id>) is a cursor on the grant id: a reader must
# never see a larger id committed before a smaller one, or it would step past the smaller one
# for good. PostgreSQL hands ids out at insert, not at commit, so the rewards steps of two
# fights take turns on this transaction-scoped advisory lock and their ids commit in order.
# (SQLite runs one writing transaction at a time anyway.)
GRANT_FEED_LOCK_ID = 0x57424752


def grant_feed_lock() -> None:
    """Wait for the grant feed's turn; held until the calling transaction ends (PostgreSQL)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [GRANT_FEED_LOCK_ID])


def _rows_insert(model: type[Any], rows: list[dict[str, Any]]) -> None:
    """INSERT ``rows`` (attname -> database value) skipping conflicts, in one ``executemany``.

    ``bulk_create(ignore_conflicts=True)`` builds a model instance and prepares every value of
    every row: most of a saga's time at 200,000 players. Here the caller prepares each constant
    once (a tier's payload, the grant time) and every other column gets its field's default.
    """
    if not rows:
        return
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    given = rows[0].keys()
    defaults = {
        f.attname: f.get_db_prep_save(f.get_default(), connection) for f in fields if f.attname not in given
    }
    qn = connection.ops.quote_name
    columns = ", ".join(qn(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {qn(model._meta.db_table)} ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING"
    with connection.cursor() as cursor:
        cursor.executemany(sql, [[{**defaults, **row}[f.attname] for f in fields] for row in rows])


# --- steps -------------------------------------------------------------------------------


def _freeze(boss: BossEncounter) -> Callable[[SagaRun], dict[str, Any]]:
    def work(saga: SagaRun) -> dict[str, Any]:
        # The death must be in the SQL archive before anything is granted: an authority that
        # rolls back behind it is then restored from the archive as defeated (docs/durability.md).
        event_log_archive(boss=boss)
        k = keys.BossKeys(boss.pk)
        # one consistent snapshot of the small hashes (keys of one slot: on a cluster, on the
        # boss's master); the players hash is scanned below, in batches
        pipe = slot_client(get_redis(), k.state).pipeline(transaction=True)
        pipe.hgetall(k.state)
        pipe.hgetall(k.contrib)
        state, contrib = pipe.execute()
        current_fight = max(int(state.get("fight") or 0), boss.fight)
        if current_fight > saga.fight:
            # A reset started a later fight: this one can never be frozen (not a retry case).
            raise SagaUnrecoverable(
                f"victory saga for {boss.slug} fight {saga.fight}: the boss is in fight {current_fight} now"
            )
        if state.get("status") != BossStatus.DEFEATED or int(state.get("fight", 0)) != saga.fight:
            raise InvalidTransition(
                f"victory saga for {boss.slug} fight {saga.fight}: the authority "
                f"is {state.get('status')!r} in fight {state.get('fight')!r}"
            )
        final = {
            f: int(state.get(f, 0) or 0)
            for f in ("hp", "version", "applied", "overkill", "accepted", "recovered", "discarded")
        }
        final["defeated_ms"] = int(state.get("defeated_ms") or state.get("last_tick_ms") or 0)
        if not BossEvent.objects.filter(boss=boss, fight=saga.fight, version__gte=final["version"]).exists():
            raise InvalidTransition(f"victory saga for {boss.slug}: the death is not archived yet")
        # Damage is already refused (ingest.lua accepts only while the status is 'live', and the
        # defeating tick set 'defeated' atomically with the last applied damage), so the players
        # hash no longer changes and a scan in batches reads the same totals as one HGETALL.
        # A field returned twice by HSCAN is dropped by the unique constraint.
        scanned = 0
        for chunk in boss_live_players(boss_id=boss.pk):
            scanned += len(chunk)
            _rows_insert(
                Contribution,
                [
                    {
                        "boss_id": boss.pk,
                        "fight": saga.fight,
                        "kind": ContributionKind.PLAYER.value,
                        "name": n,
                        "damage": d,
                        "rank": 0,
                    }
                    for n, d in chunk
                    if d > 0
                ],
            )
        totals = Contribution.objects.filter(
            boss=boss, fight=saga.fight, kind=ContributionKind.PLAYER
        ).aggregate(n=Count("id"), damage=Sum("damage"))
        breakdown = fight_defeating_breakdown(boss=boss, fight=saga.fight)
        last = rewards.last_hit_player(breakdown)
        saga.detail = {
            **saga.detail,
            "final": final,
            "shards": {n: int(v) for n, v in contrib.items()},
            "players_count": totals["n"],
            "last_hit": {"player": last, "damage": breakdown[last]} if last else None,
        }
        return {
            "status": state["status"],
            "version": final["version"],
            "shards": len(contrib),
            "players": totals["n"],
            "scanned": scanned,
        }

    return work


def _persist_final_state(boss: BossEncounter) -> Callable[[SagaRun], dict[str, Any]]:
    def work(saga: SagaRun) -> dict[str, Any]:
        final = saga.detail["final"]
        defeated_at = datetime.fromtimestamp(final["defeated_ms"] / 1000, tz=UTC)
        BossEncounter.objects.filter(pk=boss.pk, fight=saga.fight).update(
            status=BossStatus.DEFEATED,
            final_hp=final["hp"],
            final_version=final["version"],
            defeated_at=defeated_at,
            updated_at=timezone.now(),
        )
        return {"hp": final["hp"], "version": final["version"], "defeated_at": defeated_at.isoformat()}

    return work


def _contributions(boss: BossEncounter) -> Callable[[SagaRun], dict[str, Any]]:
    def work(saga: SagaRun) -> dict[str, Any]:
        shards = [
            Contribution(
                boss=boss, fight=saga.fight, kind=ContributionKind.SHARD, name=name, damage=dmg, rank=rank
            )
            for rank, name, dmg in _ranked(saga.detail["shards"])
        ]
        Contribution.objects.bulk_create(shards, ignore_conflicts=True, batch_size=1_000)
        ranked = _players_rank(boss=boss, fight=saga.fight)
        players = Contribution.objects.filter(
            boss=boss, fight=saga.fight, kind=ContributionKind.PLAYER
        ).aggregate(damage=Sum("damage"))
        return {
            "shards": sum(saga.detail["shards"].values()),
            "players": players["damage"] or 0,
            "rows": len(shards) + ranked,
        }

    return work


def _leaderboard(boss: BossEncounter) -> Callable[[SagaRun], dict[str, Any]]:
    def work(saga: SagaRun) -> dict[str, Any]:
        top = Contribution.objects.filter(
            boss=boss, fight=saga.fight, kind=ContributionKind.PLAYER, rank__lte=LEADERBOARD_SIZE
        ).order_by("rank")
        saga.detail = {
            **saga.detail,
            "leaderboard": [{"rank": c.rank, "player": c.name, "damage": c.damage} for c in top],
        }
        return {"size": len(saga.detail["leaderboard"])}

    return work


def _rewards(boss: BossEncounter) -> Callable[[SagaRun], dict[str, Any]]:
    def work(saga: SagaRun) -> dict[str, Any]:
        grant_feed_lock()  # before the first insert: ids commit in the order they are taken
        # The table as it is when this step runs (the step is one transaction: a re-run after
        # a crash inside it grants from scratch, never half from one table, half from another).
        fresh = BossEncounter.objects.select_related("reward_table").get(pk=boss.pk)
        table = reward_table_spec(table=fresh.reward_table)
        # the fight's record keeps the tiers it was granted from (docs/liveops.md)
        fight_reward_table_record(boss_id=boss.pk, fight=saga.fight, table=fresh.reward_table)
        eligible = fight_players_eligible(boss=boss, fight=saga.fight, min_damage=table.min_damage)
        before = RewardGrant.objects.filter(boss=boss, fight=saga.fight).count()
        per_tier: dict[str, int] = {}
        batch: list[dict[str, Any]] = []
        # Constants prepared once for the database (JSON payloads, the grant time).
        payload_field = RewardGrant._meta.get_field("payload")
        granted_at = RewardGrant._meta.get_field("granted_at").get_db_prep_save(timezone.now(), connection)
        prepared: dict[str, Any] = {}

        def grant(*, name: str, rank: int, dmg: int, tier: str, payload: Any) -> None:
            if tier not in prepared:
                prepared[tier] = payload_field.get_db_prep_save(dict(payload), connection)
            per_tier[tier] = per_tier.get(tier, 0) + 1
            batch.append(
                {
                    "boss_id": boss.pk,
                    "fight": saga.fight,
                    "player": name,
                    "rank": rank,
                    "damage": dmg,
                    "tier": tier,
                    "payload": prepared[tier],
                    "saga_id": saga.pk,
                    "granted_at": granted_at,
                }
            )
            if len(batch) >= PLAYERS_BATCH:
                _rows_insert(RewardGrant, batch)
                batch.clear()

        match = rewards.tier_matcher(table, eligible=eligible)
        for rank, name, dmg in fight_players_ranked(boss=boss, fight=saga.fight, min_damage=table.min_damage):
            tier = match(rank, dmg)
            if tier is not None:
                grant(name=name, rank=rank, dmg=dmg, tier=tier.name, payload=tier.payload)
        last = (saga.detail.get("last_hit") or {}).get("player")
        last_hit = None
        if last and table.last_hit_payload is not None:
            row = Contribution.objects.filter(
                boss=boss, fight=saga.fight, kind=ContributionKind.PLAYER, name=last
            ).first()
            if row is not None and rewards.is_eligible(table, row.damage):
                last_hit = last
                grant(
                    name=last,
                    rank=row.rank,
                    dmg=row.damage,
                    tier=rewards.LAST_HIT,
                    payload=table.last_hit_payload,
                )
        _rows_insert(RewardGrant, batch)
        after = RewardGrant.objects.filter(boss=boss, fight=saga.fight).count()
        fight_event_send(
            boss_id=boss.pk,
            slug=boss.slug,
            fight=saga.fight,
            event=signals.REWARDS_GRANTED,
            payload={"grants": after},
        )
        return {
            "granted": after - before,
            "total": after,
            "table": fresh.reward_table.name if fresh.reward_table else "",
            "eligible": eligible,
            # step records hold scalars only: "mvp:1 heavy:3 last_hit:1"
            "tiers": " ".join(f"{name}:{n}" for name, n in per_tier.items()),
            "last_hit": last_hit or "",
        }

    return work


def defeated_message(*, boss: BossEncounter, saga: SagaRun) -> wire_messages.DefeatedFrame:
    """The ``defeated`` broadcast: final version, defeat time and the top-N leaderboard."""
    final = saga.detail["final"]
    return wire_messages.defeated_frame(
        boss=boss.slug,
        version=final["version"],
        ts=final["defeated_ms"],
        fight=saga.fight,
        leaderboard=saga.detail.get("leaderboard", []),
        players=saga.detail.get("players_count", 0),
        shards=len(saga.detail.get("shards", {})),
    )


def _announce(boss: BossEncounter) -> Callable[[SagaRun], dict[str, Any]]:
    def work(saga: SagaRun) -> dict[str, Any]:
        state = authority.read_state(get_redis(), boss.pk)
        messages = [state.as_message()] if state is not None else []
        defeated = defeated_message(boss=boss, saga=saga)
        messages_publish(boss_id=boss.pk, messages=[*messages, defeated])
        fight_event_send(
            boss_id=boss.pk,
            slug=boss.slug,
            fight=saga.fight,
            event=signals.DEFEATED,
            payload={k: v for k, v in defeated.items() if k not in ("type", "boss", "fight")},
        )
        return {"version": saga.detail["final"]["version"]}

    return work


_STEP_WORK = {
    "freeze": _freeze,
    "persist_final_state": _persist_final_state,
    "contributions": _contributions,
    "leaderboard": _leaderboard,
    "rewards": _rewards,
    "announce": _announce,
}


def _finish(saga: SagaRun, run_ms: float) -> None:
    saga.amount = saga.detail["final"]["applied"]
    saga.detail = {**saga.detail, "last_run_ms": run_ms}


def boss_victory_run(*, boss_id: int, fight: int) -> SagaRun:
    """Run (or resume) the victory saga of ``fight``: every step exactly once per fight.

    Returns the saga (``completed``, or ``failed`` when it cannot complete); an error that
    leaves it ``running`` is raised, so the task retries it.
    """
    try:
        boss = BossEncounter.objects.get(pk=boss_id)
    except BossEncounter.DoesNotExist:
        raise UnknownBoss(f"no boss with id {boss_id}") from None
    return saga_run(
        key=victory_saga_key(boss_id=boss_id, fight=fight),
        kind=SagaKind.VICTORY,
        boss=boss,
        fight=fight,
        steps=[SagaStep(name, _STEP_WORK[name](boss)) for name in VICTORY_STEPS],
        max_attempts=VICTORY_MAX_ATTEMPTS,
        finish=_finish,
    )


def victory_sagas_resume(*, stale_ms: int | None = None) -> list[str]:
    """Re-enqueue victory sagas that a dead worker left behind (periodic; idempotent).

    The candidates are the bosses :func:`bosses.services.victory_enqueue` marked pending and
    the bosses with a victory saga still running, not every boss: a boss whose authority
    says ``defeated`` and whose fight has no finished (completed or failed) victory saga is
    enqueued again unless its saga made progress within ``stale_ms`` (a live run is left
    alone; a concurrent duplicate would still be harmless); a finished or no longer defeated
    one leaves the pending set. Returns the saga keys enqueued.
    """
    stale_ms = settings.SAGA_STALE_MS if stale_ms is None else stale_ms
    cutoff = timezone.now() - timedelta(milliseconds=stale_ms)
    r = get_redis()
    pending = {int(i) for i in r.smembers(keys.VICTORY_PENDING)}
    running = set(
        SagaRun.objects.filter(kind=SagaKind.VICTORY, status=SagaStatus.RUNNING).values_list(
            "boss_id", flat=True
        )
    )
    ids = sorted(pending | running)
    enqueued: list[str] = []
    for start in range(0, len(ids), SQL_BATCH_BOSSES):
        enqueued += _resume_batch(r, ids[start : start + SQL_BATCH_BOSSES], cutoff=cutoff)
    return enqueued


def _resume_batch(r: Any, ids: list[int], *, cutoff: datetime) -> list[str]:
    """:func:`victory_sagas_resume` for one batch: one Redis pipeline, two SQL queries."""
    bosses = list(
        BossEncounter.objects.filter(pk__in=ids).exclude(status__in=[BossStatus.DRAFT, BossStatus.EXPIRED])
    )
    pipe = r.pipeline(transaction=False)
    for boss in bosses:
        pipe.hmget(keys.BossKeys(boss.pk).state, ["status", "fight"])
    states = pipe.execute() if bosses else []
    wanted = {
        boss.pk: victory_saga_key(boss_id=boss.pk, fight=int(fight))
        for boss, (status, fight) in zip(bosses, states, strict=True)
        if status == BossStatus.DEFEATED and fight is not None
    }
    sagas = {saga.key: saga for saga in SagaRun.objects.filter(key__in=list(wanted.values()))}
    done = [i for i in ids if i not in wanted]
    enqueued = []
    for boss_id, key in wanted.items():
        saga = sagas.get(key)
        if saga is not None and saga.status != SagaStatus.RUNNING:
            done.append(boss_id)
        elif saga is None or saga_last_progress(saga=saga) <= cutoff:
            victory_enqueue(boss_id=boss_id)
            enqueued.append(key)
    if done:
        r.srem(keys.VICTORY_PENDING, *done)
    return enqueued


def victory_result(*, boss: BossEncounter) -> dict[str, Any] | None:
    """Read-only summary of the current fight's victory saga for dashboards (None before it starts)."""
    saga = SagaRun.objects.filter(key=victory_saga_key(boss_id=boss.pk, fight=boss.fight)).first()
    if saga is None:
        return None
    return {
        "key": saga.key,
        "status": saga.status,
        "steps": steps_done(saga),
        "attempts": saga.attempts,
        "leaderboard": (saga.detail or {}).get("leaderboard", []),
        "rewards": RewardGrant.objects.filter(boss=boss, fight=boss.fight).count(),
        "final": (saga.detail or {}).get("final"),
        "finished_at": saga.finished_at,
    }
