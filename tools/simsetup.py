"""Platform-side helpers of the simulator: simulated shards, the demo boss, settling a fight.

The simulator (tools/simulator.py) only talks WebSockets; these run next to the platform
(same database and Redis) for ``fight``, ``demo`` and the bench.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bosses.models import BossEncounter, BossStatus
from bosses.selectors import boss_sagas_running
from bosses.services import boss_end, boss_go_live, boss_reset
from core import keys
from core.redis import get_redis
from shards.models import Shard, ShardKind, ShardStatus
from shards.services import shard_create, shard_token_rotate
from tools.simulator import ShardSpec

SETTLE_TIMEOUT_S = 15.0


def sim_shards_ensure(*, prefix: str, hosted: int, sdk: int) -> list[ShardSpec]:
    """Shards ``<prefix>-h<n>`` (hosted players) and ``<prefix>-s<n>`` (SDK servers, fresh tokens).

    SDK shards get a newly rotated token each run: they belong to the simulator, and a token
    is only ever shown once.
    """
    specs: list[ShardSpec] = []
    for n in range(1, hosted + 1):
        key = f"{prefix}-h{n}"
        shard = Shard.objects.filter(key=key).first()
        if shard is None:
            shard, _ = shard_create(key=key, name=f"{prefix} hosted {n}", region="sim", kind=ShardKind.HOSTED)
        elif shard.status == ShardStatus.RETIRED:
            raise ValueError(f"shard {key} is retired; use another --prefix")
        elif shard.kind != ShardKind.HOSTED:  # made before shards had kinds (migrated to game_server)
            Shard.objects.filter(pk=shard.pk).update(kind=ShardKind.HOSTED)
        specs.append(ShardSpec(key))
    for n in range(1, sdk + 1):
        key = f"{prefix}-s{n}"
        shard = Shard.objects.filter(key=key).first()
        if shard is None:
            shard, token = shard_create(key=key, name=f"{prefix} game server {n}", region="sim")
        elif shard.status == ShardStatus.RETIRED:
            raise ValueError(f"shard {key} is retired; use another --prefix")
        else:
            if shard.kind != ShardKind.GAME_SERVER:
                Shard.objects.filter(pk=shard.pk).update(kind=ShardKind.GAME_SERVER)
            token = shard_token_rotate(shard=shard)
        specs.append(ShardSpec(key, token))
    return specs


@dataclass
class BossSetup:
    """The boss a simulated fight runs against."""

    boss: BossEncounter
    created: bool
    reset: bool


def sim_boss_prepare(
    *, slug: str, name: str, max_hp: int, attacks_per_second: int = 10, fresh: bool = True
) -> BossSetup:
    """Create (or reset, when ``fresh``) a boss and take it live.

    A simulated boss owns its keys on its Redis: an authority there that another database
    seeded for the same boss id (another checkout's demo, a deleted db.sqlite3) is dropped
    first, where go-live of a real fight would refuse it.
    """
    boss = BossEncounter.objects.filter(slug=slug).first()
    created = reset = False
    if boss is None:
        boss = BossEncounter.objects.create(
            slug=slug, name=name, max_hp=max_hp, attacks_per_second=attacks_per_second
        )
        created = True
    _drop_foreign_authority(boss)
    if not created and fresh:
        state = get_redis().hget(keys.BossKeys(boss.pk).state, "status")
        if state in (BossStatus.LIVE, BossStatus.PAUSED):
            boss_end(boss=boss)
        elif state is None and boss.status in (BossStatus.LIVE, BossStatus.PAUSED):
            # Its authority lived in a Redis that is gone (e.g. the server the last demo
            # started): nothing to end; mark the old fight over so it can be reset.
            BossEncounter.objects.filter(pk=boss.pk).update(status=BossStatus.EXPIRED)
            boss.refresh_from_db()
        if boss.status != BossStatus.DRAFT or state is not None:
            boss_reset(boss=boss)
            reset = True
        BossEncounter.objects.filter(pk=boss.pk).update(max_hp=max_hp, attacks_per_second=attacks_per_second)
        boss.refresh_from_db()
    if boss.status == BossStatus.DRAFT:
        boss_go_live(boss=boss)
        boss.refresh_from_db()
    return BossSetup(boss, created, reset)


def _drop_foreign_authority(boss: BossEncounter) -> None:
    r = get_redis()
    k = keys.BossKeys(boss.pk)
    theirs = r.hget(k.state, "incarnation")
    if theirs and theirs != boss.incarnation:
        r.delete(*k.all())
        r.srem(keys.LIVE_BOSSES, boss.pk)
        r.srem(k.dirty, boss.pk)
        if boss.status in (BossStatus.LIVE, BossStatus.PAUSED):  # its own authority is gone
            BossEncounter.objects.filter(pk=boss.pk).update(status=BossStatus.EXPIRED)
            boss.refresh_from_db()


def boss_accepted(*, boss_id: int) -> int:
    """Damage the platform has accepted for the boss this fight."""
    return int(get_redis().hget(keys.BossKeys(boss_id).state, "accepted") or 0)


def fight_settle(*, boss_id: int, expected_accepted: int | None, timeout_s: float = SETTLE_TIMEOUT_S) -> bool:
    """Wait until the gateways have flushed, the sync tick drained every buffer and no saga runs.

    With ``expected_accepted`` also wait until the platform accepted that much. A session
    that left with ``bye`` is settled by a crash saga on a Celery worker, so the fight is
    only settled once that saga has finished too. Returns whether it settled in time.
    """
    r = get_redis()
    k = keys.BossKeys(boss_id)
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        status, accepted = r.hmget(k.state, "status", "accepted")
        buffered = r.hlen(k.buf)
        done = (
            buffered == 0
            and (
                expected_accepted is None
                or int(accepted or 0) >= expected_accepted
                or status in ("defeated", "expired")
            )
            and boss_sagas_running(boss_id=boss_id) == 0
        )
        if done:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 0.3:  # a gateway tick may still be in flight
                return True
        else:
            quiet_since = None
        time.sleep(0.05)
    return False
