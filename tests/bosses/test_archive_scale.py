"""The periodic passes at thousands of live bosses: their cost follows the changed fights.

Bosses are created in bulk (SQL rows and their seeded authority, as ``boss_go_live`` would
leave them), then the real Celery task bodies run: the archive pass (restore check and
copy), the crash scan and saga resumption. The SQL they issue is counted with Django's
``CaptureQueriesContext``, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bosses import tasks
from bosses.models import BossEncounter, BossEvent, BossStatus
from bosses.services import ARCHIVE_PASS_BOSSES, SQL_BATCH_BOSSES, boss_tick
from core import authority, keys
from core.phases import OPENING_PHASE_NAME
from tests.support.authority import delta_ingest

pytestmark = pytest.mark.django_db

SEED_BATCH = 500


def live_bosses(count: int, *, first: int) -> list[BossEncounter]:
    """``count`` live bosses, each seeded in Redis with its incarnation and in the live set."""
    from core.redis import get_redis

    rows = [
        BossEncounter(
            name=f"Scale {first + i}",
            slug=f"scale-{first + i}",
            max_hp=1_000_000,
            phases="",
            incarnation=uuid.uuid4().hex,
        )
        for i in range(count)
    ]
    made = BossEncounter.objects.bulk_create(rows)
    made = list(BossEncounter.objects.filter(slug__in=[b.slug for b in rows]).order_by("pk"))
    r = get_redis()
    for start in range(0, len(made), SEED_BATCH):
        batch = made[start : start + SEED_BATCH]
        calls = [
            authority.seed_call(
                boss_id=b.pk,
                max_hp=b.max_hp,
                phases=[],
                opening=OPENING_PHASE_NAME,
                fight=b.fight,
                slug=b.slug,
                min_tick_ms=0,
                floors={},
                incarnation=b.incarnation,
            )
            for b in batch
        ]
        assert all(out.code == "ok" for out in authority.run_many(r, calls))
        r.sadd(keys.LIVE_BOSSES, *[b.pk for b in batch])
    BossEncounter.objects.filter(pk__in=[b.pk for b in made]).update(status=BossStatus.LIVE)
    return made


def damage(bosses: list[BossEncounter], session) -> None:
    """One delta and one tick for each of ``bosses``: their logs change."""
    for i, boss in enumerate(bosses):
        delta_ingest(boss_id=boss.pk, shard_key=session.shard_key, epoch=session.epoch, seq=1, amount=100 + i)
        assert boss_tick(boss_id=boss.pk, force=True).applied == 100 + i


def periodic_queries() -> dict[str, int]:
    """Run the archive, crash-scan and resume tasks once; SQL statements each issued."""
    counts = {}
    for name, task in (
        ("archive", tasks.archive_event_logs),
        ("crash_scan", tasks.scan_crashed_sessions),
        ("resume", tasks.resume_sagas),
    ):
        with CaptureQueriesContext(connection) as ctx:
            task()
        counts[name] = len(ctx.captured_queries)
    return counts


def test_the_archive_pass_at_2000_live_bosses_runs_on_every_database(make_session):
    """On SQLite the restore check once built one OR term per archived fight and failed at
    2,000 ("Expression tree is too large (maximum depth 1000)"); every statement now names at
    most SQL_BATCH_BOSSES bosses."""
    bosses = live_bosses(2_000, first=0)
    tasks.archive_event_logs()  # a pass takes at most ARCHIVE_PASS_BOSSES marked fights...
    assert BossEvent.objects.count() == ARCHIVE_PASS_BOSSES
    tasks.archive_event_logs()  # ...the rest stayed marked for the next one
    assert BossEvent.objects.count() == 2_000
    changed = bosses[::700]
    damage(changed, make_session("eu-1"))
    tasks.archive_event_logs()  # the check now compares 2,000 archived fights' tops
    for boss in changed:
        assert list(BossEvent.objects.filter(boss=boss).values_list("version", flat=True)) == [1, 2]
    assert BossEvent.objects.count() == 2_000 + len(changed)


def test_the_periodic_passes_cost_what_changed_not_what_is_live(make_session):
    shard = make_session("eu-1")
    small = live_bosses(600, first=0)
    tasks.archive_event_logs()  # first pass: every bucket unwatched, everything checked once
    damage(small[:3], shard)
    before = periodic_queries()
    live_bosses(1_400, first=600)  # 2,000 live now
    tasks.archive_event_logs()  # the new bosses' seeded entries (two passes: 1,400 marked)
    tasks.archive_event_logs()
    damage(small[3:6], shard)
    after = periodic_queries()
    assert after == before, (before, after)
    # and those passes did their work: the changed fights' ticks are in SQL
    for boss in small[:6]:
        assert BossEvent.objects.filter(boss=boss, fight=boss.fight, version=2).exists()
    assert before["archive"] < 4 * SQL_BATCH_BOSSES // 10
