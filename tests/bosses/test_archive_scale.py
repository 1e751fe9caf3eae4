"""The periodic passes at thousands of live bosses: their cost follows the changed fights.

Bosses are created in bulk (SQL rows and their seeded authority, as ``boss_go_live`` would
leave them), then the real Celery task bodies run: the archive pass (restore check and
copy), the crash scan and saga resumption. The SQL they issue is counted with Django's
``CaptureQueriesContext``, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bosses import tasks
from bosses.models import BossEncounter, BossEvent
from bosses.services import ARCHIVE_PASS_BOSSES, SQL_BATCH_BOSSES, boss_tick
from tests.support.authority import delta_ingest
from tools.bench.harness import live_bosses_create

pytestmark = pytest.mark.django_db

SEED_BATCH = 500


def live_bosses(count: int, *, first: int) -> list[BossEncounter]:
    """``count`` live bosses, each seeded in Redis with its incarnation and in the live set."""
    return live_bosses_create(
        count=count,
        slug_prefix=f"scale-{first}-",
        name_prefix=f"Scale {first}-",
        max_hp=1_000_000,
        min_tick_ms=0,
        batch=SEED_BATCH,
    )


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
