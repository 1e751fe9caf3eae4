"""Property-based: the damage-taken multiplier of each phase, applied by tick.lua, keeps the
extended ledger exact and the event log replays to the same HP (docs/liveops.md, "Mechanics").

Random multipliers, max HP, deltas per tick and tick counts drive the real services on a real
Redis; a plain-Python model of the documented rule (floor of the tick's drained total times
the basis points of the phase the boss is in when the tick starts, the rest mitigated) must
give the same integers, ``verify_boss`` must pass, and so must a replay of the archived log.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bosses.models import BossEncounter, BossEvent
from bosses.services import boss_go_live, boss_tick, event_log_archive
from bosses.verification import boss_verify
from core import authority, keys
from core.phases import parse_phases, phase_of, phase_thresholds
from core.redis import get_redis
from shards.models import Shard
from shards.services import shard_create, shard_session_open
from tests.support.authority import delta_ingest

_ids = itertools.count(1)


def _model_tick(*, hp: int, bp: int, total: int) -> tuple[int, int, int]:
    """``(applied, mitigated, overkill)`` of one tick by the rule docs/liveops.md states."""
    counted = total * bp // 10_000
    applied = min(counted, hp)
    return applied, total - counted, counted - applied


@pytest.mark.django_db
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    max_hp=st.integers(1, 10**12),
    bps=st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)),
    ticks=st.lists(st.lists(st.integers(1, 10**11), min_size=0, max_size=4), min_size=1, max_size=12),
)
def test_multiplier_keeps_the_ledger_and_the_replay_exact(max_hp, bps, ticks) -> None:
    n = next(_ids)
    phases = f"60:A takes {bps[0] / 100:g}%, 20:B takes {bps[1] / 100:g}%"
    boss = BossEncounter.objects.create(name=f"M{n}", slug=f"mech-{n}", max_hp=max_hp, phases=phases)
    boss_go_live(boss=boss)
    shard_create(key=f"m{n}", name=f"m{n}")
    session = shard_session_open(shard=Shard.objects.get(key=f"m{n}"))
    thresholds = phase_thresholds(parse_phases(phases), max_hp)
    by_phase = [10_000, *bps]
    hp, seq = max_hp, 0
    accepted = applied_sum = mitigated_sum = overkill_sum = 0
    for deltas in ticks:
        if hp == 0:
            break
        for amount in deltas:
            seq += 1
            delta_ingest(boss_id=boss.pk, shard_key=f"m{n}", epoch=session.epoch, seq=seq, amount=amount)
            accepted += amount
        out = boss_tick(boss_id=boss.pk, force=True)
        if not deltas:
            assert out.code == "idle"
            continue
        bp = by_phase[phase_of(thresholds, hp)[0]]
        applied, mitigated, overkill = _model_tick(hp=hp, bp=bp, total=sum(deltas))
        assert (out.applied, out.mitigated, out.overkill) == (applied, mitigated, overkill)
        hp -= applied
        applied_sum, mitigated_sum, overkill_sum = (
            applied_sum + applied,
            mitigated_sum + mitigated,
            overkill_sum + overkill,
        )
        assert out.hp == hp
        assert out.damage_taken_bp == by_phase[phase_of(thresholds, hp)[0]]
    state = authority.read_state(get_redis(), boss.pk)
    assert state is not None and state.hp == hp
    assert state.as_message()["damage_taken_bp"] == by_phase[phase_of(thresholds, hp)[0]]
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    assert (report.accepted, report.applied, report.mitigated, report.overkill, report.buffered) == (
        accepted,
        applied_sum,
        mitigated_sum,
        overkill_sum,
        0,
    )
    assert accepted == applied_sum + mitigated_sum + overkill_sum
    assert report.hp == report.replay_hp == max_hp - applied_sum
    # The archived log replays to the same books.
    event_log_archive(boss=boss)
    archived = list(BossEvent.objects.filter(boss=boss, fight=boss.fight))
    assert sum(e.mitigated for e in archived) == mitigated_sum
    assert boss_verify(boss=boss).ok


@pytest.mark.django_db
def test_verify_boss_finds_a_log_entry_whose_split_is_not_the_phases(r) -> None:
    """A tick entry whose mitigated share is not the one its phase's multiplier gives fails."""
    boss = BossEncounter.objects.create(
        name="Tamper", slug="mech-tamper", max_hp=1_000, phases="90:A takes 50%"
    )
    boss_go_live(boss=boss)
    shard_create(key="mt", name="mt")
    session = shard_session_open(shard=Shard.objects.get(key="mt"))
    for seq, amount in enumerate((200, 101), start=1):
        delta_ingest(boss_id=boss.pk, shard_key="mt", epoch=session.epoch, seq=seq, amount=amount)
        boss_tick(boss_id=boss.pk, force=True)
    # 200 at full damage (opening phase), then 101 at 50 %: 50 counted, 51 mitigated.
    assert boss_verify(boss=boss).ok
    log = keys.BossKeys(boss.pk).log
    last_id, fields = r.xrevrange(log, count=1)[0]
    assert (fields["applied"], fields["mitigated"], fields["bp"]) == ("50", "51", "5000")
    r.xdel(log, last_id)
    major = last_id.split("-")[0]
    r.xadd(log, {**fields, "bp": "10000"}, id=f"{major}-2")  # the same version, rewritten
    problems = boss_verify(boss=boss).problems
    assert any("takes 5000 bp of 101" in p for p in problems), problems
