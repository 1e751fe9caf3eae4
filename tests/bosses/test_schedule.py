"""Schedules: a boss goes live at its start time and expires (enrages) undefeated at its end time."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from bosses.models import BossEncounter, BossStatus
from bosses.services import boss_end, boss_go_live, boss_reset, boss_schedules_apply, boss_tick
from core import keys
from core.errors import BossNotLive
from core.redis import get_redis
from liveops.asgi import application
from shards.services import adelta_ingest
from tests.support.authority import delta_ingest


def test_schedule_starts_due_drafts_and_expires_live_bosses_past_their_end(make_boss, make_session):
    now = timezone.now()
    due = make_boss(starts_at=now - timedelta(seconds=1), ends_at=now + timedelta(hours=1))
    later = make_boss(starts_at=now + timedelta(minutes=5))
    missed = make_boss(starts_at=now - timedelta(hours=2), ends_at=now - timedelta(hours=1))
    ending = make_boss(ends_at=now + timedelta(seconds=30))
    boss_go_live(boss=ending)

    assert sorted(boss_schedules_apply(now=now)) == [f"{due.slug}: live"]
    statuses = {b.slug: b.status for b in BossEncounter.objects.all()}
    assert statuses == {due.slug: "live", later.slug: "draft", missed.slug: "draft", ending.slug: "live"}

    done = boss_schedules_apply(now=now + timedelta(seconds=31))
    assert done == [f"{ending.slug}: expired"]
    assert get_redis().hget(keys.BossKeys(ending.pk).state, "status") == "expired"
    assert str(ending.pk) not in get_redis().smembers(keys.LIVE_BOSSES)
    assert boss_schedules_apply(now=now + timedelta(seconds=32)) == []  # nothing twice


def test_a_boss_defeated_before_its_end_time_is_not_expired(make_boss, make_session):
    boss = make_boss(max_hp=100, ends_at=timezone.now() + timedelta(seconds=5))
    boss_go_live(boss=boss)
    s = make_session()
    delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=100)
    assert boss_tick(boss_id=boss.pk, force=True).defeated
    assert boss_schedules_apply(now=timezone.now() + timedelta(seconds=10)) == []
    assert get_redis().hget(keys.BossKeys(boss.pk).state, "status") == "defeated"


def test_a_scheduled_boss_with_a_broken_config_stays_a_draft(make_boss):
    boss = make_boss(starts_at=timezone.now() - timedelta(seconds=1), phases="bogus")
    assert boss_schedules_apply() == []
    boss.refresh_from_db()
    assert boss.status == BossStatus.DRAFT and get_redis().exists(keys.BossKeys(boss.pk).state) == 0


async def _viewer(slug: str) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, f"/ws/bosses/{slug}/")
    connected, _ = await comm.connect()
    assert connected
    return comm


async def _until(comm, predicate, timeout_s: float) -> list[dict]:
    seen, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            msg = json.loads(await comm.receive_from(timeout=max(0.05, deadline - time.monotonic())))
        except TimeoutError:
            break
        seen.append(msg)
        if predicate(msg):
            return seen
    raise AssertionError(f"no matching message within {timeout_s}s; saw {seen[-5:]}")


async def _db_status_becomes(boss, status: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        await sync_to_async(boss.refresh_from_db)()
        if boss.status == status:
            return
        assert time.monotonic() < deadline, f"SQL status stayed {boss.status}, expected {status}"
        await asyncio.sleep(0.05)


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
async def test_real_beat_starts_then_expires_a_scheduled_boss_and_everyone_hears_it(
    celery_stack, make_boss, make_session
):
    starts = timezone.now() + timedelta(seconds=1.5)
    ends = starts + timedelta(seconds=3)
    boss = await sync_to_async(make_boss)(starts_at=starts, ends_at=ends)
    r = get_redis()

    deadline = time.monotonic() + 10
    while r.hget(keys.BossKeys(boss.pk).state, "status") != "live":
        assert time.monotonic() < deadline, "the beat did not start the boss"
        await asyncio.sleep(0.05)
    assert timezone.now() >= starts  # not before its start time
    # The service seeds Redis first and mirrors the status to SQL right after.
    await _db_status_becomes(boss, BossStatus.LIVE)

    viewers = [await _viewer(boss.slug) for _ in range(3)]
    s = await sync_to_async(make_session)()
    await adelta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=1_000)
    for comm in viewers:  # everyone sees the damage, then the boss enrage and leave
        seen = await _until(comm, lambda m: m["type"] == "expired", timeout_s=10)
        assert any(m["type"] == "state" and m["hp"] == boss.max_hp - 1_000 for m in seen)
        expired = seen[-1]
        assert expired["boss"] == boss.slug and expired["version"] > 1
        # The expired state (published just before the event; latest-wins may reorder it).
        finals = [m for m in seen if m["type"] == "state" and m["status"] == "expired"] or (
            await _until(comm, lambda m: m["type"] == "state" and m["status"] == "expired", 3)
        )[-1:]
        assert finals[-1]["version"] == expired["version"]
        await comm.disconnect()
    assert timezone.now() >= ends
    await _db_status_becomes(boss, BossStatus.EXPIRED)
    with pytest.raises(BossNotLive):
        await adelta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=2, amount=5)


def test_reset_keeps_a_future_schedule_and_clears_a_past_one(make_boss):
    now = timezone.now()
    past = make_boss(starts_at=now - timedelta(minutes=5))
    future = make_boss(starts_at=now + timedelta(hours=1), ends_at=now + timedelta(hours=2))
    boss_go_live(boss=past)
    boss_end(boss=past)
    boss_reset(boss=past, now=now)
    boss_reset(boss=future, now=now)  # a draft: the next fight's schedule stays

    past.refresh_from_db()
    future.refresh_from_db()
    assert past.starts_at is None
    assert (future.starts_at, future.ends_at) == (now + timedelta(hours=1), now + timedelta(hours=2))
    assert boss_schedules_apply(now=now + timedelta(seconds=1)) == []
    assert boss_schedules_apply(now=now + timedelta(hours=1, seconds=1)) == [f"{future.slug}: live"]
