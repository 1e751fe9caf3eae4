"""rate.lua: the hosted players' rate limit shared by every ASGI process (GCRA on Redis TIME)."""

from __future__ import annotations

import time

from core import authority, keys
from tests.support.waiting import wait_until


def judge(r, players: list[str], rate: int, boss_id: int = 7) -> list[int]:
    return authority.run(r, authority.rate_call(boss_id=boss_id, players=players, attacks_per_second=rate))


def test_a_burst_of_one_second_passes_then_one_attack_per_interval(r) -> None:
    verdicts = judge(r, ["alice"] * 8, rate=5)
    assert verdicts[:5] == [0] * 5  # the burst: one second's worth at once
    assert all(0 < wait <= 201 for wait in verdicts[5:])  # then wait for the next interval
    assert verdicts[5] >= verdicts[6] >= verdicts[7]  # refusals take nothing: the same wait
    # refused attacks took nothing: once the first wait is over exactly one more passes
    time.sleep(verdicts[5] / 1000 + 0.01)  # the scenario: the refused player waits as told
    again = judge(r, ["alice", "alice"], rate=5)
    assert again[0] == 0 and again[1] > 0


def test_players_and_bosses_have_separate_allowances(r) -> None:
    assert judge(r, ["alice"] * 3, rate=3) == [0, 0, 0]
    assert judge(r, ["alice"], rate=3)[0] > 0
    assert judge(r, ["bob"], rate=3) == [0]  # another player: untouched
    assert judge(r, ["alice"], rate=3, boss_id=8) == [0]  # another boss: untouched


def test_the_key_is_on_the_boss_tag_and_expires_with_the_allowance(r) -> None:
    judge(r, ["alice"] * 2, rate=10)
    key = keys.BossKeys(7).rate("alice")
    assert key.startswith(keys.BossKeys(7).tag)
    ttl = r.pttl(key)
    assert 0 < ttl <= 201  # two attacks of 100 ms each: full again (and gone) within 200 ms
    # an idle player costs no memory: the key is gone once its allowance is full again
    wait_until(lambda: not r.exists(key), timeout_s=ttl / 1000 + 1, what="the rate key to expire")
    assert judge(r, ["alice"] * 10, rate=10) == [0] * 10  # and has its whole burst back
