"""kill -9 of the Celery worker in the middle of ticking, 20+ times, while deltas keep arriving.

Each worker is started before the previous one is killed (so two workers overlap for a moment:
concurrent ticks are part of the fault), and killed at a random moment while the beat keeps
sending 50 ms ticks for three bosses. Afterwards every boss's HP is exactly max_hp minus every
accepted delta, and verify_boss finds the ledger, the versions and the log replay intact.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from bosses.services import boss_go_live
from bosses.verification import boss_verify
from core import keys
from core.errors import AuthorityUnavailable
from core.redis import get_redis
from tests.faults.conftest import wait_until
from tests.support import processes
from tests.support.authority import delta_ingest

pytestmark = [pytest.mark.process, pytest.mark.fault]

KILLS = 20
FAST_TICK = {"SYNC_TICK_INTERVAL_MS": "50", "CRASH_SCAN_INTERVAL_MS": "200"}
MAX_HP = 1_000_000_000


class Sender(threading.Thread):
    """Keeps sending deltas (every ~3 ms, round robin over bosses and sessions); counts accepted."""

    def __init__(self, bosses, sessions):
        super().__init__(daemon=True)
        self.bosses, self.sessions = bosses, sessions
        self.accepted = {b.pk: 0 for b in bosses}
        self.seq = {(b.pk, s.shard_key): 0 for b in bosses for s in sessions}
        self.stopping = threading.Event()
        self.errors: list[Exception] = []

    def run(self):
        rng = random.Random(4)
        while not self.stopping.is_set():
            boss, s = rng.choice(self.bosses), rng.choice(self.sessions)
            seq = self.seq[boss.pk, s.shard_key] + 1
            amount = rng.randint(1, 500)
            try:
                delta_ingest(boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=seq, amount=amount)
            except AuthorityUnavailable:
                continue  # not accepted: nothing counted, the next one goes elsewhere
            except Exception as exc:  # anything else is a failure of the test
                self.errors.append(exc)
                return
            self.seq[boss.pk, s.shard_key] = seq
            self.accepted[boss.pk] += amount
            time.sleep(0.003)  # the sender's pace


def applied_versions(bosses) -> int:
    r = get_redis()
    return sum(int(r.hget(keys.BossKeys(b.pk).state, "version")) for b in bosses)


def test_worker_killed_20_times_mid_ticking_loses_and_doubles_nothing(
    transactional_db, make_boss, make_session
):
    bosses = [make_boss(max_hp=MAX_HP, tick_interval_ms=100) for _ in range(3)]
    for boss in bosses:
        boss_go_live(boss=boss)
    sessions = [make_session() for _ in range(4)]
    sender = Sender(bosses, sessions)
    beat = processes.start_beat(**FAST_TICK)
    rng = random.Random(7)
    worker = None
    lives_with_ticks = 0
    try:
        sender.start()
        worker = processes.start_worker(**FAST_TICK)
        for _ in range(KILLS):
            before = applied_versions(bosses)
            successor = processes.start_worker(**FAST_TICK)  # ready while the doomed one ticks
            time.sleep(rng.uniform(0.0, 0.3))  # the scenario: a kill at a random moment of a tick
            worker.kill9()  # SIGKILL to the whole process group, mid-whatever it is doing
            if applied_versions(bosses) > before:
                lives_with_ticks += 1
            worker = successor
        time.sleep(0.5)  # the scenario: the last worker ticks a while before the sender stops
        sender.stopping.set()
        sender.join(timeout=10)
        assert not sender.errors, sender.errors
        r = get_redis()
        wait_until(
            lambda: all(r.hlen(keys.BossKeys(b.pk).buf) == 0 for b in bosses),
            timeout_s=20,
            what="the last worker to drain every buffer",
        )
    finally:
        sender.stopping.set()
        if worker is not None:
            worker.stop()
        beat.stop()

    assert lives_with_ticks >= KILLS - 2  # the kills really landed while ticks were being applied
    for boss in bosses:
        report = boss_verify(boss=boss)
        assert report.ok, (boss.slug, report.problems)
        assert sender.accepted[boss.pk] > 0
        assert report.accepted == report.applied == sender.accepted[boss.pk]
        assert report.hp == MAX_HP - sender.accepted[boss.pk]
        assert report.version > 20  # many ticks, each logged once
