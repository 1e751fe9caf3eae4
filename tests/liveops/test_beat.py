"""The beat entry really ticks every ~100 ms (measured; only a loose bound is asserted)."""

from __future__ import annotations

import statistics
import time

import pytest

from bosses.selectors import boss_tick_times_ms
from tests.support.waiting import wait_until

MEASURE_S = 4.0


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


@pytest.mark.process
def test_beat_ticks_every_100_ms(live_boss, celery_stack, capsys):
    # beat and worker are up once the ticks come on their own; then measure from there
    start = wait_until(lambda: (n := len(boss_tick_times_ms())) >= 3 and n, what="the first ticks")
    time.sleep(MEASURE_S)  # the scenario: the ticks of a 4 s window
    times = boss_tick_times_ms()[start:]
    intervals = [b - a for a, b in zip(times, times[1:])]
    assert len(intervals) >= MEASURE_S * 5, f"only {len(intervals)} ticks in {MEASURE_S}s"
    p50, p99 = statistics.median(intervals), percentile(intervals, 99)
    with capsys.disabled():
        print(
            f"\nsync tick intervals over {MEASURE_S:.0f}s: n={len(intervals)} p50={p50:.1f} ms "
            f"p99={p99:.1f} ms max={max(intervals):.1f} ms"
        )
    # Loose bounds only: this machine is shared and noisy; figures are in docs/sync-tick.md.
    assert 60 <= p50 <= 200
