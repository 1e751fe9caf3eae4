"""16 concurrent submitters x thousands of deltas while a real worker, driven by a real beat,
ticks every ~100 ms: afterwards every invariant holds exactly and HP is exact."""

from __future__ import annotations

import random
import threading
import time

import pytest

from bosses.selectors import boss_ledger, boss_tick_times_ms
from bosses.services import boss_go_live
from bosses.verification import boss_verify
from core.errors import AuthorityUnavailable
from tests.support.authority import delta_ingest

SUBMITTERS = 16
DELTAS_EACH = 1_500
DRAIN_WAIT_S = 10.0


@pytest.mark.process
def test_concurrent_submitters_with_real_ticks(make_boss, make_session, celery_stack):
    boss = make_boss(max_hp=10**12)
    boss_go_live(boss=boss)
    sessions = [make_session(f"c{i}") for i in range(SUBMITTERS)]
    sent = [0] * SUBMITTERS
    errors: list[BaseException] = []
    start = threading.Barrier(SUBMITTERS)

    def submit(i: int) -> None:
        s = sessions[i]
        rng = random.Random(i)
        try:
            start.wait()
            seq = 1
            while seq <= DELTAS_EACH:
                amount = rng.randint(1, 10_000)
                try:
                    res = delta_ingest(
                        boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=seq, amount=amount
                    )
                except AuthorityUnavailable:
                    continue  # retry the same seq, as the SDK does
                if not res.duplicate:
                    sent[i] += amount
                if rng.random() < 0.05:  # a lost ack: the same seq comes again
                    assert delta_ingest(
                        boss_id=boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=seq, amount=amount
                    ).duplicate
                seq += 1
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(SUBMITTERS)]
    ticks_before = len(boss_tick_times_ms())
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]

    deadline = time.monotonic() + DRAIN_WAIT_S
    while boss_ledger(boss_id=boss.pk).buffers and time.monotonic() < deadline:
        time.sleep(0.1)
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    assert report.buffered == 0, "the beat-driven worker did not drain the buffers"
    assert report.accepted == report.applied == sum(sent)
    assert report.hp == boss.max_hp - sum(sent)
    # The ticks came from beat + worker while the submitters ran (many applied versions).
    assert len(boss_tick_times_ms()) > ticks_before
    assert report.version > 3
