"""The bench harness: nearest-rank percentiles, and the shard writer's deltas through the
production async ingest (exactly once per seq, a re-sent seq never counted twice)."""

from __future__ import annotations

from core.keys import BossKeys
from core.redis import get_async_redis
from tools.bench.harness import ShardBuffer, boss_forget, boss_seed, percentile, summarize_ms

BOSS_ID = 990_000_001  # authority-only, far above real ids


def test_percentile_is_the_nearest_rank_sample():
    values = [40, 15, 50, 35, 20]  # unsorted on purpose
    assert [percentile(values, p) for p in (0, 30, 40, 50, 100)] == [15, 20, 20, 35, 50]
    assert percentile(list(range(1, 101)), 99) == 99  # a measured sample, never interpolated
    assert percentile([], 99) == 0.0
    assert summarize_ms([0.003, 0.001, 0.002], scale=1000.0) == {
        "n": 3,
        "p50_ms": 2.0,
        "p99_ms": 3.0,
        "max_ms": 3.0,
    }


async def test_shard_buffer_sends_what_it_holds_once_per_seq():
    await boss_seed(BOSS_ID, shard_keys=["bench-h-1"])
    buf = ShardBuffer(boss_id=BOSS_ID, key="bench-h-1")
    try:
        for damage in (5, 7):
            buf.hit(damage)
        assert await buf.flush() == 12
        assert await buf.flush() == 0  # nothing pending: nothing sent
        buf.hit(3)
        assert await buf.flush() == 3
        # the last ack lost on the way back: the next flush re-sends the same seq and amount
        buf.unacked = 3
        assert await buf.flush() == 3
        accepted = await get_async_redis().hget(BossKeys(BOSS_ID).state, "accepted")
        assert int(accepted) == 15 and buf.seq == 2 and buf.hits == 3 and buf.pending == 0
    finally:
        await boss_forget(BOSS_ID, ["bench-h-1"])
