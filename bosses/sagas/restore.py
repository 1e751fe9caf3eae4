"""The restore saga: rebuild a fight's authority from the SQL archive after Redis lost it or came
back behind it (docs/durability.md).

Detection (:func:`authority_check`) compares the authority in Redis with what SQL holds
durably: the archived event log (its highest version), the fight's restore generation, and
the completed crash sagas (each must still have its settlement). A Redis that is empty, or
behind any of those, is rebuilt by the saga, on the shared runner (steps recorded and
resumable, failpoints ``restore.<step>.before|inside``):

1. ``rebuild``: one atomic restore.lua replaces every key of the boss with the state the
   archive gives (HP, version, ledger counters, per-session seqs, settlements, contributions,
   per-player totals; a *fair* settlement whose recovered damage the archive does not show
   applied goes back into the buffer) as generation ``authority_gen + 1``, status
   ``recovering``. Clients are refused as not live meanwhile and keep their deltas.
2. ``reopen``: back to the fight's status (a logged version bump), state published. The
   clients' next deltas get ``seq_gap`` (the restored seqs are the archive's) and they re-send
   the acknowledged deltas they kept since (``LocalBuffer.realign``): the final HP is exact.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

from django.db.models import OuterRef, Q, Subquery
from django.db.models.functions import Mod

from bosses.broadcast import messages_publish
from bosses.fight_configs import fight_config_get
from bosses.models import BossEncounter, BossEvent, BossStatus, CrashPolicy, SagaKind, SagaRun, SagaStatus
from bosses.sagas.runner import SagaStep, SagaUnrecoverable, saga_last_progress, saga_run
from bosses.services import (
    SQL_BATCH_BOSSES,
    TICK_INTERVAL_SLACK,
    event_log_archive_all,
    unarchived_mark,
    unarchived_take,
)
from core import authority, keys
from core.clients import SyncClient, execute_pipelined
from core.phases import OPENING_PHASE_NAME, authority_phases, phase_of
from core.redis import REDIS_DOWN, get_redis
from shards.models import Shard, ShardStatus

logger = logging.getLogger(__name__)

RESTORE_STEPS = ("rebuild", "reopen")
RESTORE_MAX_ATTEMPTS = 20
# A restore saga still running this long after its last progress lost its process: resume it.
RESTORE_RESUME_AFTER_MS = 2_000
# Fights the restore check's rolling sweep checks per pass besides the changed ones: each
# unchanged fight is checked once per (restorable fights / this) passes (docs/durability.md).
RESTORE_SWEEP_BOSSES = 250
# The archive pass's lock lives this long at most: a pass whose process died blocks the next
# ones no longer than this.
ARCHIVE_LOCK_MS = 10_000
RECOVERING = "recovering"  # the authority's status between rebuild and reopen
# Statuses a fight can be restored into (a draft has no authority to restore).
RESTORABLE = (BossStatus.LIVE, BossStatus.PAUSED, BossStatus.DEFEATED, BossStatus.EXPIRED)


def restore_saga_key(*, boss_id: int, fight: int, gen: int) -> str:
    """One restore saga per (boss, fight, generation it writes)."""
    return f"restore:{boss_id}:{fight}:{gen}"


def authority_check(*, boss: BossEncounter) -> str:
    """``ok``, or why the authority must be restored: ``lost`` (no state), ``behind`` (older than
    the archive or the generation, its entry of the archive's newest version is another one,
    or a settlement SQL recorded is missing); ``foreign`` (another
    database's authority: never touched) and ``none`` (nothing to restore: a draft)."""
    return _verdicts([boss])[boss.pk]


def _verdicts(bosses: list[BossEncounter]) -> dict[int, str]:
    """:func:`authority_check` for many bosses: one Redis pipeline and two SQL queries."""
    out = {b.pk: "none" for b in bosses}
    bosses = [b for b in bosses if b.status in RESTORABLE and b.incarnation]
    if not bosses:
        return out
    r = get_redis()
    pipe = r.pipeline(transaction=False)
    for b in bosses:
        pipe.hmget(keys.BossKeys(b.pk).state, ["incarnation", "version", "gen", "status"])
    states = dict(zip((b.pk for b in bosses), pipe.execute(), strict=True))
    fights = {b.pk: b.fight for b in bosses}
    archived = _archived_tops(fights)
    diverged = _diverged(r, fights=fights, archived=archived)
    completed = _completed_crash_sessions(fights)
    settled = _settled_sessions(r, boss_ids=list(completed))
    for b in bosses:
        out[b.pk] = _verdict(
            b,
            state=states[b.pk],
            archived_top=archived.get(b.pk, 0),
            diverged=b.pk in diverged,
            unsettled=bool(completed.get(b.pk, set()) - settled.get(b.pk, set())),
        )
    return out


def _archived_tops(fights: dict[int, int]) -> dict[int, int]:
    """The highest archived version of each boss's current fight (``fights``: boss id -> fight):
    one query, a LIMIT 1 subquery per boss on the (boss, fight, version) index, so its cost
    does not grow with the length of the fights."""
    newest = BossEvent.objects.filter(boss=OuterRef("pk"), fight=OuterRef("fight")).order_by("-version")
    archived: dict[int, int] = {}
    for boss_id, fight, top in (
        BossEncounter.objects.filter(pk__in=list(fights))
        .annotate(top=Subquery(newest.values("version")[:1]))
        .values_list("pk", "fight", "top")
    ):
        if top is not None and fights[boss_id] == fight:
            archived[boss_id] = top
    return archived


def _diverged(r: SyncClient, *, fights: dict[int, int], archived: dict[int, int]) -> set[int]:
    """Bosses whose log entry of the archive's newest version is another one than the archive's.

    A Redis that rolled back and ticked on re-issues versions with other contents (and may
    already be past the archive's version when this check runs).
    """
    tops = Q()
    for boss_id, top in archived.items():
        tops |= Q(boss_id=boss_id, fight=fights[boss_id], version=top)
    archived_rows = (
        {b: (hp, ts) for b, hp, ts in BossEvent.objects.filter(tops).values_list("boss_id", "hp", "ts_ms")}
        if archived
        else {}
    )
    pipe = r.pipeline(transaction=False)
    for boss_id, top in archived.items():
        entry_id = f"{top}-1"
        pipe.xrange(keys.BossKeys(boss_id).log, min=entry_id, max=entry_id)
    logged = dict(zip(archived, pipe.execute(), strict=True)) if archived else {}
    diverged = set()
    for boss_id, entries in logged.items():
        if entries and boss_id in archived_rows:
            fields = entries[0][1]
            try:
                logged_row = (int(fields.get("hp", -1)), int(fields.get("ts", -1)))
            except ValueError:
                # an entry that cannot be read is that boss's problem (the archive reports it),
                # never a reason to stop checking the others
                logger.error(
                    "the log entry %s of boss %s cannot be read: not compared", entries[0][0], boss_id
                )
                continue
            if logged_row != archived_rows[boss_id]:
                diverged.add(boss_id)
    return diverged


def _completed_crash_sessions(fights: dict[int, int]) -> dict[int, set[str]]:
    """The sessions of each boss's current fight that SQL records a completed crash saga for."""
    completed: dict[int, set[str]] = {}
    for boss_id, fight, shard_key, epoch in SagaRun.objects.filter(
        boss_id__in=fights, kind=SagaKind.CRASH, status=SagaStatus.COMPLETED
    ).values_list("boss_id", "fight", "shard_key", "epoch"):
        if fights[boss_id] == fight:
            completed.setdefault(boss_id, set()).add(keys.session_id(shard_key, epoch))
    return completed


def _settled_sessions(r: SyncClient, *, boss_ids: list[int]) -> dict[int, set[str]]:
    """The sessions each boss's authority holds a settlement for (one pipeline)."""
    if not boss_ids:
        return {}
    pipe = r.pipeline(transaction=False)
    for boss_id in boss_ids:
        pipe.hkeys(keys.BossKeys(boss_id).settled)
    return dict(zip(boss_ids, (set(v) for v in pipe.execute()), strict=True))


def _verdict(
    boss: BossEncounter, *, state: list[Any], archived_top: int, diverged: bool, unsettled: bool
) -> str:
    """One boss's verdict from its authority's ``[incarnation, version, gen, status]``."""
    incarnation, version, gen, status = state
    if version is None:
        return "lost"
    if incarnation and incarnation != boss.incarnation:
        return "foreign"
    if status == RECOVERING:
        return "ok"  # a restore is under way; its saga (or the resume) finishes it
    if int(gen or 0) < boss.authority_gen or int(version) < archived_top or diverged:
        return "behind"
    if unsettled:
        return "behind"  # a crash saga SQL recorded lost its fence in Redis
    return "ok"


class _ArchiveTotals:
    """What the archived events add up to: ledger sums, seqs, contributions, player totals."""

    def __init__(self, events: list[BossEvent]) -> None:
        self.seq: dict[str, int] = {}
        self.contrib: dict[str, int] = {}
        self.players: dict[str, int] = {}
        # per session: the recovered damage the archive shows applied
        self.recovered_applied: dict[str, int] = {}
        self.applied = self.overkill = self.mitigated = self.healed = 0
        for ev in events:
            self._add(ev)

    def _add(self, ev: BossEvent) -> None:
        self.applied += ev.applied
        self.overkill += ev.overkill
        self.mitigated += ev.mitigated
        self.healed += ev.healed
        for session, s in ev.seqs.items():
            self.seq[session] = max(self.seq.get(session, 0), int(s))
        for field, amount in ev.deltas.items():
            parsed = keys.parse_session(field)
            if parsed is None:
                continue
            self.contrib[parsed.shard_key] = self.contrib.get(parsed.shard_key, 0) + int(amount)
            if parsed.recovered:
                self.recovered_applied[parsed.session] = self.recovered_applied.get(parsed.session, 0) + int(
                    amount
                )
        for player, amount in ev.players.items():
            self.players[player] = self.players.get(player, 0) + int(amount)


class _Settlements:
    """The completed crash sagas of the fight as the authority's settlements and buffer.

    Recovered damage the archive does not show applied goes back into the buffer (and into
    the shard's contribution, added to ``totals.contrib``).
    """

    def __init__(self, *, boss: BossEncounter, totals: _ArchiveTotals) -> None:
        self.settled: dict[str, str] = {}
        self.buf: dict[str, int] = {}
        self.recovered = self.discarded = 0
        for saga in SagaRun.objects.filter(
            boss=boss, fight=boss.fight, kind=SagaKind.CRASH, status=SagaStatus.COMPLETED
        ):
            session = keys.session_id(saga.shard_key, saga.epoch or 0)
            self.settled[session] = f"{saga.policy}:{saga.amount}"
            if saga.policy == CrashPolicy.FAIR:
                self.recovered += saga.amount
                owed = saga.amount - totals.recovered_applied.get(session, 0)
                if owed > 0:
                    self.buf[keys.recovered_field(session)] = owed
                    totals.contrib[saga.shard_key] = totals.contrib.get(saga.shard_key, 0) + owed
            else:
                self.discarded += saga.amount


def _restored_state(
    *,
    boss: BossEncounter,
    gen: int,
    now_ms: int,
    last: BossEvent | None,
    totals: _ArchiveTotals,
    settlements: _Settlements,
) -> dict[str, Any]:
    """The authority's state hash as generation ``gen``, status ``recovering``."""
    setup = fight_config_get(boss=boss, fight=boss.fight)  # what the fight was seeded with
    thresholds = setup.thresholds
    hp = last.hp if last else setup.max_hp
    phase, phase_name = phase_of(thresholds, hp)
    state: dict[str, Any] = {
        "hp": hp,
        "max_hp": setup.max_hp,
        "version": last.version if last else 1,
        "status": RECOVERING,
        "phase": phase,
        "phase_name": phase_name,
        "opening": OPENING_PHASE_NAME,
        "phases": json.dumps(authority_phases(thresholds, setup.damage_taken, setup.regen)),
        "damage_taken_bp": setup.damage_taken[phase],
        "regen_per_s": setup.regen[phase],
        "healed": totals.healed,
        "regen_ms": now_ms,
        "regen_carry": 0,
        "accepted": totals.applied + totals.mitigated + totals.overkill + sum(settlements.buf.values()),
        "applied": totals.applied,
        "overkill": totals.overkill,
        "mitigated": totals.mitigated,
        "recovered": settlements.recovered,
        "discarded": settlements.discarded,
        "last_tick_ms": now_ms,
        "changed_ms": now_ms,
        "fight": boss.fight,
        "slug": boss.slug,
        "min_tick_ms": int(boss.tick_interval_ms * TICK_INTERVAL_SLACK),
        "incarnation": boss.incarnation,
        "gen": gen,
    }
    if last is not None and last.status == BossStatus.DEFEATED:
        state["defeated_ms"] = last.ts_ms
    return state


def archive_snapshot(*, boss: BossEncounter, gen: int, now_ms: int) -> dict[str, Any]:
    """What the archive and the saga records say the authority held (restore.lua's ARGV 4)."""
    events = list(BossEvent.objects.filter(boss=boss, fight=boss.fight).order_by("version"))
    totals = _ArchiveTotals(events)
    settlements = _Settlements(boss=boss, totals=totals)
    last = events[-1] if events else None
    state = _restored_state(
        boss=boss, gen=gen, now_ms=now_ms, last=last, totals=totals, settlements=settlements
    )
    first: list[Any] = []
    if last is None:  # nothing archived yet: the fight restarts as go-live seeded it
        first = [
            "v",
            1,
            "kind",
            "status",
            "status",
            "live",
            "hp",
            fight_config_get(boss=boss, fight=boss.fight).max_hp,
        ]
        first += ["applied", 0, "overkill", 0, "d", "{}", "ts", now_ms]
    floor = {
        s.key: s.current_epoch + 1
        for s in Shard.objects.filter(status=ShardStatus.RETIRED).only("key", "current_epoch")
    }

    def text(m: dict[str, Any]) -> dict[str, str]:
        return {k: str(v) for k, v in m.items()}

    return {
        "state": text(state),
        "seq": text(totals.seq),
        "settled": settlements.settled,
        "floor": text(floor),
        "contrib": text(totals.contrib),
        "players": text(totals.players),
        "buf": text(settlements.buf),
        "first": [str(x) for x in first],
        # for the saga record and the reopen step
        "reopen_to": _reopen_status(boss, last),
    }


def _reopen_status(boss: BossEncounter, last: BossEvent | None) -> str:
    if last is not None and last.status == BossStatus.DEFEATED:
        return BossStatus.DEFEATED
    return boss.status if boss.status in (BossStatus.LIVE, BossStatus.PAUSED, BossStatus.EXPIRED) else "live"


def _rebuild(boss: BossEncounter, gen: int) -> Callable[[SagaRun], dict[str, Any]]:
    def work(saga: SagaRun) -> dict[str, Any]:
        now_ms = int(time.time() * 1000)
        snap = archive_snapshot(boss=boss, gen=gen, now_ms=now_ms)
        reopen_to = snap.pop("reopen_to")
        r = get_redis()
        out = authority.run(
            r,
            authority.restore_call(
                boss_id=boss.pk, incarnation=boss.incarnation, gen=gen, snapshot=json.dumps(snap)
            ),
        )
        if out.code == "foreign":
            raise SagaUnrecoverable(f"the authority in Redis belongs to incarnation {out.detail}")
        # SQL's shard epochs are durable: a rolled-back epoch counter would refuse live sessions.
        epochs = dict(Shard.objects.values_list("key", "current_epoch"))
        if epochs:
            pipe = r.pipeline(transaction=False)
            for key, epoch in epochs.items():
                pipe.hset(keys.SHARD_EPOCHS, key, epoch)
            pipe.execute()
        BossEncounter.objects.filter(pk=boss.pk, fight=boss.fight).update(authority_gen=gen)
        saga.detail = {**saga.detail, "reopen_to": reopen_to}
        state = snap["state"]
        return {
            "outcome": out.code,
            "version": int(state["version"]),
            "hp": int(state["hp"]),
            "gen": gen,
            "sessions": len(snap["seq"]),
            "settlements": len(snap["settled"]),
            "owed_recovered": sum(int(v) for v in snap["buf"].values()),
        }

    return work


def _reopen(boss: BossEncounter) -> Callable[[SagaRun], dict[str, Any]]:
    def work(saga: SagaRun) -> dict[str, Any]:
        r = get_redis()
        to = saga.detail.get("reopen_to", BossStatus.LIVE)
        out = authority.run(r, authority.transition_call(boss_id=boss.pk, to=to, allowed_from=(RECOVERING,)))
        if out.code == "no_boss" or (out.code == "refused" and out.status != to):
            raise RuntimeError(f"cannot reopen {boss.slug}: the authority is {out.status or 'gone'}")
        if to in (BossStatus.LIVE, BossStatus.PAUSED, BossStatus.DEFEATED):
            # The tick visits it again; a defeated one gets its victory saga checked there.
            r.sadd(keys.LIVE_BOSSES, boss.pk)
            if to == BossStatus.DEFEATED:
                r.sadd(keys.BossKeys(boss.pk).dirty, boss.pk)
        state = authority.read_state(r, boss.pk)
        if (
            state is not None
            and state.regen_per_s > 0
            and state.hp < state.max_hp
            and to != BossStatus.DEFEATED
        ):
            # A regenerating phase heals with nobody hitting it: the tick must visit it (tick.lua).
            r.sadd(keys.BossKeys(boss.pk).dirty, boss.pk)
        if state is not None:
            messages_publish(boss_id=boss.pk, messages=[state.as_message()])
        return {"status": to, "version": state.version if state else 0}

    return work


def authority_restore(*, boss: BossEncounter, reason: str, gen: int | None = None) -> SagaRun:
    """Run (or resume) the restore saga that writes generation ``gen`` (default: the next)."""
    gen = boss.authority_gen + 1 if gen is None else gen
    logger.warning(
        "authority of %s (fight %s) is %s: restoring generation %s", boss.slug, boss.fight, reason, gen
    )
    return saga_run(
        key=restore_saga_key(boss_id=boss.pk, fight=boss.fight, gen=gen),
        kind=SagaKind.RESTORE,
        boss=boss,
        fight=boss.fight,
        steps=[SagaStep("rebuild", _rebuild(boss, gen)), SagaStep("reopen", _reopen(boss))],
        max_attempts=RESTORE_MAX_ATTEMPTS,
        defaults={"detail": {"reason": reason, "gen": gen}},
    )


def authority_check_all(*, changed: Collection[int] = (), sweep: int = RESTORE_SWEEP_BOSSES) -> list[SagaRun]:
    """Check fights' authority against SQL and restore what is lost or behind; resume restore
    sagas a dead process left running (periodic, with the archive: docs/durability.md).

    A pass checks the fights whose log ``changed`` (the archive pass's marks), the next
    ``sweep`` fights of a rolling cursor over every restorable fight, and every fight of a
    bucket whose watch key is missing (a Redis that lost its data: restarted empty, flushed,
    failed over to an empty node), in SQL batches of SQL_BATCH_BOSSES; then it sets the
    missing watch keys. Its cost follows the changed fights, not the live ones.
    """
    r = get_redis()
    try:
        unwatched = _unwatched_buckets(r)
        ids = set(changed) | set(_sweep_ids(r, sweep))
    except REDIS_DOWN:
        return []  # the authority is away: nothing can be checked or restored now
    restorable = BossEncounter.objects.filter(status__in=RESTORABLE).order_by("pk")
    if unwatched:
        ids |= set(
            restorable.annotate(bucket=Mod("id", keys.TICK_BUCKETS))
            .filter(bucket__in=unwatched)
            .values_list("pk", flat=True)
        )
    ordered = sorted(ids)
    sagas: list[SagaRun] = []
    for start in range(0, len(ordered), SQL_BATCH_BOSSES):
        sagas += _check_batch(list(restorable.filter(pk__in=ordered[start : start + SQL_BATCH_BOSSES])))
    if unwatched:
        execute_pipelined(r, [(keys.watch_key(b), ("SET", keys.watch_key(b), 1)) for b in unwatched])
    return sagas + _stale_restores_resume()


def archive_pass_run() -> int:
    """One pass of the periodic archive (docs/durability.md): take the bosses whose log
    changed, check their authority (with the sweep and any unwatched bucket) against SQL,
    then copy their new log entries. Returns the entries copied.

    One pass runs at a time (``ARCHIVE_LOCK``, expiring after ARCHIVE_LOCK_MS if its
    process dies): a pass scheduled while one runs returns at once. The check comes before
    the copy, so a rolled-back authority's new entries never reach the archive.
    """
    r = get_redis()
    token = uuid.uuid4().hex
    if not r.set(keys.ARCHIVE_LOCK, token, nx=True, px=ARCHIVE_LOCK_MS):
        return 0
    try:
        changed = unarchived_take()
        try:
            authority_check_all(changed=changed)
        except Exception:
            unarchived_mark(boss_ids=changed)
            raise
        return event_log_archive_all(boss_ids=changed)
    finally:
        if r.get(keys.ARCHIVE_LOCK) == token:
            r.delete(keys.ARCHIVE_LOCK)


def _check_batch(bosses: list[BossEncounter]) -> list[SagaRun]:
    """Check one batch of fights and restore the lost or behind ones."""
    sagas: list[SagaRun] = []
    try:
        verdicts = _verdicts(bosses)
    except REDIS_DOWN:
        return sagas
    for boss in bosses:
        verdict = verdicts[boss.pk]
        if verdict in ("lost", "behind"):
            sagas.append(authority_restore(boss=boss, reason=verdict))
        elif verdict == "foreign":
            logger.error("the authority of %s belongs to another database or fight: not touched", boss.slug)
    return sagas


def _unwatched_buckets(r: SyncClient) -> list[int]:
    """The buckets whose watch key is missing (one pipeline; one per master on a cluster)."""
    names = [keys.watch_key(b) for b in range(keys.TICK_BUCKETS)]
    replies = execute_pipelined(r, [(name, ("EXISTS", name)) for name in names])
    down = [reply for reply in replies if isinstance(reply, Exception)]
    if down and len(down) == len(replies):
        raise down[0]
    return [b for b, reply in enumerate(replies) if reply == 0]


def _sweep_ids(r: SyncClient, count: int) -> list[int]:
    """The next ``count`` restorable fights after the cursor (wrapping to the first), and
    the cursor moved past them: every fight is checked once per N / count passes."""
    if count <= 0:
        return []
    cursor = int(r.get(keys.RESTORE_CURSOR) or 0)
    restorable = BossEncounter.objects.filter(status__in=RESTORABLE).order_by("pk")
    ids = list(restorable.filter(pk__gt=cursor).values_list("pk", flat=True)[:count])
    if len(ids) < count:
        ids += list(restorable.filter(pk__lte=cursor).values_list("pk", flat=True)[: count - len(ids)])
    if ids:
        r.set(keys.RESTORE_CURSOR, ids[-1])
    return ids


def _stale_restores_resume() -> list[SagaRun]:
    """Resume the restore sagas a dead process left running."""
    sagas: list[SagaRun] = []
    stale = datetime.fromtimestamp(time.time() - RESTORE_RESUME_AFTER_MS / 1000, tz=UTC)
    for saga in SagaRun.objects.filter(kind=SagaKind.RESTORE, status=SagaStatus.RUNNING).select_related(
        "boss"
    ):
        if saga.fight == saga.boss.fight and saga_last_progress(saga=saga) < stale:
            sagas.append(
                authority_restore(boss=saga.boss, reason="resumed", gen=int(saga.detail.get("gen", 0)))
            )
    return sagas
