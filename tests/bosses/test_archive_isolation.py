"""A log entry that cannot be read stops the archive of its own boss only (docs/durability.md,
"A broken event log"). A poisoned entry is written straight into one boss's stream in real
Redis; another boss is archived, verified and won as usual, and the bad boss is reported: the
``worldboss_event_log_undecodable`` gauge, a ``verify_boss`` problem and the ops overview."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from bosses.models import BossEvent, SagaRun, SagaStatus
from bosses.ops_selectors import ops_overview_live
from bosses.sagas.restore import authority_check_all
from bosses.sagas.victory import boss_victory_run
from bosses.selectors import EventLogUndecodable
from bosses.services import boss_go_live, boss_tick, event_log_archive
from bosses.tasks import archive_event_logs
from bosses.verification import boss_verify
from core import keys
from core.redis import get_redis
from tests.support.authority import delta_ingest

pytestmark = pytest.mark.django_db(transaction=True)


def _hit(boss, session, seq: int, amount: int, player: str = "alice"):
    delta_ingest(
        boss_id=boss.pk,
        shard_key=session.shard_key,
        epoch=session.epoch,
        seq=seq,
        amount=amount,
        breakdown={player: amount},
    )
    return boss_tick(boss_id=boss.pk, force=True)


def _poison(boss) -> int:
    """A tick's entry whose ``d`` and ``p`` are not JSON (what string concatenation in the Lua
    once wrote for the player id ``"nl\\n"``), as the next version of the boss."""
    r = get_redis()
    k = keys.BossKeys(boss.pk)
    state = r.hgetall(k.state)
    version = int(state["version"]) + 1
    r.xadd(
        k.log,
        {
            "v": str(version),
            "kind": "tick",
            "status": "live",
            "hp": state["hp"],
            "applied": "0",
            "overkill": "0",
            "d": "{}",
            "ts": state["last_tick_ms"],
            "s": "{}",
            "p": '{"nl\n":60}',
        },
        id=f"{version}-1",
    )
    r.hset(k.state, "version", version)
    return version


def _archived_top(boss) -> int:
    return max(BossEvent.objects.filter(boss=boss, fight=boss.fight).values_list("version", flat=True))


def _gauge(boss) -> float | None:
    return REGISTRY.get_sample_value("worldboss_event_log_undecodable", {"boss": boss.slug})


def test_a_poisoned_log_entry_stops_only_its_own_bosss_archive(make_boss, make_session):
    bad = make_boss(max_hp=10_000)  # created first: the archive visits it first
    good = make_boss(max_hp=1_000)
    boss_go_live(boss=bad)
    boss_go_live(boss=good)
    s_bad, s_good = make_session("iso-bad"), make_session("iso-good")
    _hit(bad, s_bad, 1, 10)
    _hit(good, s_good, 1, 10)
    archive_event_logs()
    poisoned = _poison(bad)
    _hit(bad, s_bad, 2, 20)  # the boss goes on: the tick writes the next versions
    _hit(good, s_good, 2, 20)
    good_version = _hit(good, s_good, 3, 30).version

    archive_event_logs()  # the restore check, then the archive of every boss
    assert _archived_top(good) == good_version  # archived as usual
    assert _archived_top(bad) == poisoned - 1  # the entries before the bad one are archived
    assert _gauge(bad) == 1 and _gauge(good) == 0
    problem = get_redis().hget(keys.ARCHIVE_PROBLEMS, str(bad.pk))
    assert f"event {poisoned} of {bad.slug}" in problem and "'p'" in problem
    with pytest.raises(EventLogUndecodable):
        event_log_archive(boss=bad)
    assert authority_check_all() == []  # the restore check reads on: nothing to restore

    report = boss_verify(boss=bad)
    assert any(f"event {poisoned} of {bad.slug}: field 'p'" in p for p in report.problems), report.problems
    assert boss_verify(boss=good).ok, boss_verify(boss=good).problems

    rows = {row["slug"]: row for row in ops_overview_live()["bosses"]}
    assert rows[bad.slug]["archive_problem"] == problem
    assert rows[good.slug]["archive_problem"] is None

    # the other boss's victory saga freezes and grants while the bad boss stays stuck
    out = _hit(good, s_good, 4, 1_000, player="bob")
    assert out.status == "defeated"
    saga = boss_victory_run(boss_id=good.pk, fight=good.fight)
    assert saga.status == SagaStatus.COMPLETED, saga.detail
    assert _archived_top(good) == out.version
    defeat = _hit(bad, s_bad, 3, 10_000)
    assert defeat.status == "defeated"
    with pytest.raises(EventLogUndecodable):
        boss_victory_run(boss_id=bad.pk, fight=bad.fight)  # retried: its error is recorded
    stuck = SagaRun.objects.get(boss=bad)
    assert stuck.status == SagaStatus.RUNNING and "not readable" in stuck.detail["error"]["message"]


def test_a_clean_archive_clears_the_report(make_boss, make_session):
    boss = make_boss()
    boss_go_live(boss=boss)
    _hit(boss, make_session("iso-clean"), 1, 5)
    get_redis().hset(keys.ARCHIVE_PROBLEMS, str(boss.pk), "an old problem")
    assert event_log_archive(boss=boss) == 2
    assert get_redis().hget(keys.ARCHIVE_PROBLEMS, str(boss.pk)) is None and _gauge(boss) == 0
