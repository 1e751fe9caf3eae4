"""Property-based: the damage-taken multiplier and the regeneration of each phase, applied by
tick.lua, keep the extended ledger exact and the event log replays to the same HP
(docs/liveops.md, "Mechanics").

Random multipliers, regeneration rates, max HP, deltas per tick and waits between ticks drive
the real services on a real Redis; a plain-Python model of the documented rules (regeneration
of the phase at the tick's start over the elapsed ms the tick logged, thousandths carried,
capped at max HP; then floor of the drained total times that phase's basis points, the rest
mitigated) must give the same integers, ``verify_boss`` must pass, and so must a replay of the
archived log.
"""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bosses.models import BossEncounter, BossEvent
from bosses.services import boss_go_live, boss_tick, event_log_archive
from bosses.verification import boss_verify
from core import authority, keys
from core.phases import (
    parse_phases,
    phase_damage_taken,
    phase_of,
    phase_regen,
    phase_thresholds,
    regen_heal,
)
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


class Books:
    """A plain-Python model of the authority's books, by the rules docs/liveops.md states."""

    def __init__(self, *, max_hp: int, phases: str) -> None:
        self.max_hp = self.hp = max_hp
        self.thresholds = phase_thresholds(parse_phases(phases), max_hp)
        self.bps, self.rates = phase_damage_taken(phases), phase_regen(phases)
        self.carry = self.accepted = self.applied = self.mitigated = self.overkill = self.healed = 0

    @property
    def phase(self) -> int:
        return phase_of(self.thresholds, self.hp)[0]

    def tick(self, *, total: int, elapsed_ms: int) -> tuple[int, int, int, int]:
        """``(healed, applied, mitigated, overkill)``: regeneration first, then the damage."""
        rate, bp = self.rates[self.phase], self.bps[self.phase]
        healed, self.carry = regen_heal(
            per_s=rate, elapsed_ms=elapsed_ms, carry=self.carry, room=self.max_hp - self.hp
        )
        applied, mitigated, overkill = _model_tick(hp=self.hp + healed, bp=bp, total=total)
        self.hp += healed - applied
        self.healed += healed
        self.applied += applied
        self.mitigated += mitigated
        self.overkill += overkill
        return healed, applied, mitigated, overkill


@pytest.mark.django_db
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    max_hp=st.integers(1, 10**12),
    bps=st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)),
    rates=st.tuples(st.integers(0, 5_000), st.sampled_from([0, 1, 7, 999, 1_000_000])),
    ticks=st.lists(
        st.tuples(st.lists(st.integers(1, 10**11), min_size=0, max_size=4), st.integers(0, 25)),
        min_size=1,
        max_size=12,
    ),
)
def test_mechanics_keep_the_ledger_and_the_replay_exact(max_hp, bps, rates, ticks) -> None:
    """Random multipliers, regeneration rates, deltas and waits between ticks (ms)."""
    n = next(_ids)
    phases = (
        f"60:A takes {bps[0] / 100:g}% regen {rates[0]}/s, 20:B regen {rates[1]}/s takes {bps[1] / 100:g}%"
    )
    boss = BossEncounter.objects.create(name=f"M{n}", slug=f"mech-{n}", max_hp=max_hp, phases=phases)
    boss_go_live(boss=boss)
    shard_create(key=f"m{n}", name=f"m{n}")
    session = shard_session_open(shard=Shard.objects.get(key=f"m{n}"))
    books, seq, log = Books(max_hp=max_hp, phases=phases), 0, keys.BossKeys(boss.pk).log
    for deltas, wait_ms in ticks:
        if books.hp == 0:
            break
        for amount in deltas:
            seq += 1
            delta_ingest(boss_id=boss.pk, shard_key=f"m{n}", epoch=session.epoch, seq=seq, amount=amount)
            books.accepted += amount
        time.sleep(wait_ms / 1000)  # the tick time: the model reads the elapsed ms the tick logged
        out = boss_tick(boss_id=boss.pk, force=True)
        if out.code == "idle":
            # Nothing drained and nothing healed yet: the books and the regeneration clock wait.
            assert not deltas
            continue
        _, entry = get_redis().xrevrange(log, count=1)[0]
        assert int(entry["el"]) >= wait_ms
        healed, applied, mitigated, overkill = books.tick(total=sum(deltas), elapsed_ms=int(entry["el"]))
        assert (out.healed, out.applied, out.mitigated, out.overkill) == (
            healed,
            applied,
            mitigated,
            overkill,
        )
        assert out.hp == books.hp
        assert (out.damage_taken_bp, out.regen_per_s) == (books.bps[books.phase], books.rates[books.phase])
    state = authority.read_state(get_redis(), boss.pk)
    assert state is not None and state.hp == books.hp
    frame = state.as_message()
    assert (frame["damage_taken_bp"], frame["regen_per_s"]) == (
        books.bps[books.phase],
        books.rates[books.phase],
    )
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    assert (
        report.accepted,
        report.applied,
        report.mitigated,
        report.overkill,
        report.healed,
        report.buffered,
    ) == (books.accepted, books.applied, books.mitigated, books.overkill, books.healed, 0)
    assert books.accepted == books.applied + books.mitigated + books.overkill
    assert report.hp == report.replay_hp == max_hp - books.applied + books.healed
    # The archived log replays to the same books.
    event_log_archive(boss=boss)
    archived = list(BossEvent.objects.filter(boss=boss, fight=boss.fight))
    assert sum(e.mitigated for e in archived) == books.mitigated
    assert sum(e.healed for e in archived) == books.healed
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
