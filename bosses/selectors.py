"""Reads: bosses, their live state and ledgers. No writes here."""

from __future__ import annotations

from dataclasses import dataclass

from bosses.models import BossEncounter, BossEvent, SagaRun, SagaStatus
from core import authority, keys
from core.clients import slot_client
from core.errors import UnknownBoss
from core.redis import get_redis


def boss_get(*, slug: str) -> BossEncounter:
    """The boss with ``slug`` or :class:`UnknownBoss`."""
    try:
        return BossEncounter.objects.get(slug=slug)
    except BossEncounter.DoesNotExist:
        raise UnknownBoss(f"no boss with slug {slug!r}") from None


def boss_state(*, boss_id: int) -> authority.BossState | None:
    """The authoritative state in Redis, or None if the boss has no authority."""
    return authority.read_state(get_redis(), boss_id)


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


def boss_archived_events(*, boss: BossEncounter) -> list[BossEvent]:
    """The archived event log of the boss's current fight, by version."""
    return list(BossEvent.objects.filter(boss=boss, fight=boss.fight).order_by("version"))


def boss_tick_times_ms(*, limit: int = keys.TICK_TIMES_KEEP) -> list[int]:
    """Start times of the most recent sync ticks, oldest first (for measurements)."""
    return [int(v) for v in reversed(get_redis().lrange(keys.TICK_TIMES, 0, limit - 1))]
