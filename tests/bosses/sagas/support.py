"""Helpers for the saga tests: a crash saga as a process that died mid-run leaves it."""

from __future__ import annotations

from bosses.models import BossEncounter, SagaRun
from bosses.sagas.crash import crash_saga_key
from core import authority
from core.redis import get_redis


def crash_saga_left_running(
    *, boss: BossEncounter, shard_key: str, epoch: int, fenced: bool, attempts: int = 0
) -> SagaRun:
    """A ``running`` fair crash saga of ``(shard_key, epoch)`` with no step recorded.

    ``fenced``: the dead process had already run fence.lua (the session is retired and its
    settlement made in Redis), so a resume must get that first settlement back, not a second.
    """
    saga = SagaRun.objects.create(
        key=crash_saga_key(boss_id=boss.pk, fight=boss.fight, shard_key=shard_key, epoch=epoch),
        kind="crash",
        boss=boss,
        fight=boss.fight,
        shard_key=shard_key,
        epoch=epoch,
        policy="fair",
        attempts=attempts,
        detail={"reason": "crashed"},
    )
    if fenced:
        authority.run(
            get_redis(),
            authority.fence_call(boss_id=boss.pk, shard_key=shard_key, epoch=epoch, policy="fair"),
        )
    return saga
