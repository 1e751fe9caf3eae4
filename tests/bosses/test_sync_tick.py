"""The sync tick: drain + apply atomically, re-runs, death, the event log and verify_boss."""

from __future__ import annotations

import json

import pytest
import redis as redis_lib
from django.conf import settings
from django.core.management import call_command

from bosses.models import BossEvent, BossStatus, SagaRun
from bosses.sagas.victory import boss_victory_run
from bosses.services import boss_tick, event_log_archive
from bosses.verification import boss_verify
from core import authority, keys
from core.redis import get_redis
from tests.support.authority import delta_ingest


def broker_messages(queue: str) -> list[dict]:
    """Messages waiting in a Celery queue on the (real) Redis broker."""
    broker = redis_lib.Redis.from_url(settings.BROKER_URL)
    return [json.loads(raw) for raw in broker.lrange(queue, 0, -1)]


def test_tick_rerun_after_crash_between_steps_never_double_applies(live_boss, make_session):
    s = make_session()
    delta_ingest(boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=500)
    # The worker dies right after the Lua step (drain + apply) and before the broadcast:
    first = authority.run(get_redis(), authority.tick_call(boss_id=live_boss.pk, force=True))
    assert first.code == "applied" and first.applied == 500
    # ...the retried task runs the whole tick again, and a duplicated tick follows it.
    again = boss_tick(boss_id=live_boss.pk, force=True)
    dup = boss_tick(boss_id=live_boss.pk, force=True)
    assert (again.code, dup.code) == ("idle", "idle")
    report = boss_verify(boss=live_boss)
    assert report.ok, report.problems
    assert report.applied == 500 and report.version == first.version


def test_tick_respects_interval_unless_forced(make_boss, make_session):
    from bosses.services import boss_go_live

    boss = make_boss(tick_interval_ms=10_000)
    boss_go_live(boss=boss)
    s = make_session()
    delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=5)
    assert boss_tick(boss_id=boss.pk).code == "early"  # seeded < 8 s ago
    assert boss_tick(boss_id=boss.pk, force=True).code == "applied"


def test_many_shards_crossing_zero_in_one_tick(make_boss, make_session):
    from bosses.services import boss_go_live

    boss = make_boss(max_hp=1_000, phases="50:Half")
    boss_go_live(boss=boss)
    sessions = [make_session() for _ in range(12)]
    for s in sessions:
        delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=150)
    out = boss_tick(boss_id=boss.pk, force=True)
    assert out.defeated and out.applied == 1_000 and out.overkill == 12 * 150 - 1_000
    assert (out.old_phase, out.phase, out.status) == (0, 1, "defeated")
    # Later ticks (the beat keeps firing) never report the death again.
    for _ in range(5):
        later = boss_tick(boss_id=boss.pk, force=True)
        assert not later.defeated
    victory = [m for m in broker_messages("sagas") if m["headers"]["task"] == "bosses.victory_saga"]
    assert len(victory) == 1
    assert str(boss.pk) not in get_redis().smembers(keys.LIVE_BOSSES)
    # Damage after death is refused; the ledger is exact.
    from core.errors import BossNotLive

    with pytest.raises(BossNotLive):
        delta_ingest(
            boss_id=boss.pk, shard_key=sessions[0].shard_key, epoch=sessions[0].epoch, seq=2, amount=1
        )
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    assert (report.hp, report.applied, report.overkill, report.buffered) == (0, 1_000, 800, 0)


def test_victory_saga_runs_once(make_boss, make_session):
    from bosses.services import boss_go_live

    boss = make_boss(max_hp=100)
    boss_go_live(boss=boss)
    s = make_session()
    delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=100)
    out = boss_tick(boss_id=boss.pk, force=True)
    first = boss_victory_run(boss_id=boss.pk, fight=boss.fight)
    second = boss_victory_run(boss_id=boss.pk, fight=boss.fight)
    assert first.pk == second.pk and second.status == "completed"
    assert SagaRun.objects.filter(kind="victory", boss=boss).count() == 1
    boss.refresh_from_db()
    assert boss.status == BossStatus.DEFEATED
    assert (boss.final_hp, boss.final_version) == (0, out.version)


def test_event_log_archive_is_idempotent_and_replays_after_trim(live_boss, make_session, monkeypatch):
    from bosses import services

    monkeypatch.setattr(services, "LOG_TAIL_KEEP", 3)
    s = make_session()
    for seq in range(1, 21):
        delta_ingest(boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=seq, amount=seq)
        boss_tick(boss_id=live_boss.pk, force=True)
    assert event_log_archive(boss=live_boss) == 21
    assert event_log_archive(boss=live_boss) == 0
    assert BossEvent.objects.filter(boss=live_boss).count() == 21
    assert get_redis().xlen(keys.BossKeys(live_boss.pk).log) < 21  # trimmed below the archive
    report = boss_verify(boss=live_boss)
    assert report.ok, report.problems
    assert report.replay_hp == live_boss.max_hp - sum(range(1, 21)) == report.hp
    assert report.events == 21


@pytest.mark.parametrize(
    "tamper,problem",
    [
        (lambda r, k: r.hincrby(k.state, "applied", 1), "ledger"),
        (lambda r, k: r.hincrby(k.state, "hp", -5), "hp"),
        (lambda r, k: r.xdel(k.log, "2-1"), "versions"),
        (lambda r, k: r.hincrby(k.buf, "ghost:1", 9), "ledger"),
        (lambda r, k: r.hincrby(k.state, "discarded", 3), "discarded"),
    ],
)
def test_verify_boss_reports_broken_invariants(live_boss, make_session, capsys, tamper, problem):
    s = make_session()
    delta_ingest(boss_id=live_boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=40)
    boss_tick(boss_id=live_boss.pk, force=True)
    call_command("verify_boss", live_boss.slug, "--json")
    good = json.loads(capsys.readouterr().out)
    assert good["ok"] is True
    assert {
        "accepted",
        "applied",
        "overkill",
        "buffered",
        "discarded",
        "hp",
        "max_hp",
        "version",
        "replay_hp",
        "ok",
    } <= good.keys()
    tamper(get_redis(), keys.BossKeys(live_boss.pk))
    with pytest.raises(SystemExit) as exit_info:
        call_command("verify_boss", live_boss.slug)
    assert exit_info.value.code == 1
    assert problem in capsys.readouterr().err


def test_verify_boss_unknown_slug_is_a_clear_error(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no boss with slug 'nope'"):
        call_command("verify_boss", "nope")


def test_death_tick_crashing_before_enqueue_is_recovered_once(make_boss, make_session, monkeypatch):
    from bosses import services
    from bosses.services import boss_go_live

    boss = make_boss(max_hp=10)
    boss_go_live(boss=boss)
    s = make_session()
    delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=1, amount=10)
    # The worker dies after the Lua death tick, before enqueuing the saga.
    assert authority.run(get_redis(), authority.tick_call(boss_id=boss.pk, force=True)).defeated
    boss_tick(boss_id=boss.pk)  # a concurrent / immediate tick: too early to call it a crash
    assert broker_messages("sagas") == []
    monkeypatch.setattr(services, "VICTORY_RECOVERY_AFTER_MS", -1)
    boss_tick(boss_id=boss.pk)
    boss_tick(boss_id=boss.pk)
    assert [m["headers"]["task"] for m in broker_messages("sagas")] == ["bosses.victory_saga"]
