"""Property-based: random interleavings of ingest, tick, pause, resume, heartbeats, crashes,
rejoins and retirements keep every invariant, and match a plain-Python model exactly."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from bosses.models import BossEncounter
from bosses.sagas.crash import session_fence, shard_retire
from bosses.services import boss_go_live, boss_pause, boss_resume, boss_tick
from bosses.verification import boss_verify
from core.errors import BossNotLive, Fenced, InvalidTransition, SeqGap
from shards.models import Shard
from shards.services import shard_create, shard_session_open
from tests.support.authority import delta_ingest, heartbeat_record

_ids = itertools.count(1)


@dataclass
class ModelSession:
    shard_key: str
    epoch: int
    last_seq: int = 0
    fenced: bool = False
    held: int | None = None
    base: int = 0


class AuthorityMachine(RuleBasedStateMachine):
    """Drives the real services on a real Redis and checks them against a model."""

    @initialize(max_hp=st.integers(1, 5_000), policy=st.sampled_from(["fair", "harsh"]))
    def setup(self, max_hp, policy):
        n = next(_ids)
        self.boss = BossEncounter.objects.create(
            name=f"P{n}", slug=f"prop-{n}", max_hp=max_hp, crash_policy=policy, phases="60:A, 20:B"
        )
        boss_go_live(boss=self.boss)
        self.status = "live"
        self.hp = max_hp
        self.buffered = self.applied = self.overkill = self.accepted = 0
        self.recovered = self.discarded = 0
        self.sessions: list[ModelSession] = []
        self.shards: list[str] = []
        self.retired: set[str] = set()

    def _open(self, shard_key: str) -> None:
        session = shard_session_open(shard=Shard.objects.get(key=shard_key))
        self.sessions.append(ModelSession(shard_key, session.epoch))

    @rule()
    def new_shard(self):
        key = f"p{next(_ids)}"
        shard_create(key=key, name=key)
        self.shards.append(key)
        self._open(key)

    @precondition(lambda self: any(k not in self.retired for k in self.shards))
    @rule(data=st.data())
    def rejoin(self, data):
        """Another process (or a restarted one) of an existing shard: a new epoch."""
        self._open(data.draw(st.sampled_from([k for k in self.shards if k not in self.retired])))

    @precondition(lambda self: self.sessions)
    @rule(
        data=st.data(),
        amount=st.integers(1, 900),
        mode=st.sampled_from(["next", "next", "next", "dup", "gap"]),
    )
    def ingest(self, data, amount, mode):
        s = data.draw(st.sampled_from(self.sessions))
        seq = {"next": s.last_seq + 1, "dup": max(1, s.last_seq), "gap": s.last_seq + 2}[mode]
        args = dict(boss_id=self.boss.pk, shard_key=s.shard_key, epoch=s.epoch, seq=seq, amount=amount)
        if s.fenced:
            with pytest.raises(Fenced):
                delta_ingest(**args)
        elif seq <= s.last_seq:
            assert delta_ingest(**args).duplicate
        elif self.status != "live":
            with pytest.raises(BossNotLive):
                delta_ingest(**args)
            if self.status in ("defeated", "expired"):
                s.held = None  # what it held can never count any more: the report is cleared
        elif seq != s.last_seq + 1:
            with pytest.raises(SeqGap):
                delta_ingest(**args)
        else:
            assert not delta_ingest(**args).duplicate
            s.last_seq = seq
            self.buffered += amount
            self.accepted += amount
            if s.held is not None and seq >= s.base:
                s.held = max(0, s.held - amount)

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), pending=st.integers(0, 500), inflight=st.integers(0, 500))
    def heartbeat(self, data, pending, inflight):
        s = data.draw(st.sampled_from(self.sessions))
        iseq = s.last_seq + 1 if inflight else 0
        args = dict(
            boss_id=self.boss.pk,
            shard_key=s.shard_key,
            epoch=s.epoch,
            pending=pending,
            inflight_seq=iseq,
            inflight_amount=inflight,
        )
        if s.fenced:
            with pytest.raises(Fenced):
                heartbeat_record(**args)
            return
        assert heartbeat_record(**args).held == pending + inflight
        s.held, s.base = pending + inflight, (iseq if inflight else s.last_seq + 1)

    @precondition(lambda self: any(not s.fenced for s in self.sessions))
    @rule(data=st.data())
    def crash(self, data):
        s = data.draw(st.sampled_from([s for s in self.sessions if not s.fenced]))
        saga = session_fence(boss=self.boss, shard_key=s.shard_key, epoch=s.epoch)
        self._settle(s, saga.amount)

    def _settle(self, s: ModelSession, amount: int) -> None:
        assert amount == (s.held or 0)
        # a boss that is over settles harsh whatever its policy: nothing after the end is credit
        if self.boss.crash_policy == "fair" and self.status not in ("defeated", "expired"):
            self.recovered += amount
            self.accepted += amount
            self.buffered += amount
        else:
            self.discarded += amount
        s.fenced, s.held = True, None

    @precondition(lambda self: any(k not in self.retired for k in self.shards))
    @rule(data=st.data())
    def retire(self, data):
        key = data.draw(st.sampled_from([k for k in self.shards if k not in self.retired]))
        before = {id(s): s.held for s in self.sessions}
        shard_retire(shard=Shard.objects.get(key=key))
        self.retired.add(key)
        for s in self.sessions:
            if s.shard_key == key and not s.fenced:
                if s.last_seq == 0 and s.held is None:
                    s.fenced = True  # never seen by this boss: refused by the epoch floor
                else:
                    self._settle(s, before[id(s)] or 0)

    @rule()
    def tick(self):
        out = boss_tick(boss_id=self.boss.pk, force=True)
        if self.status == "live" and self.buffered:
            applied = min(self.buffered, self.hp)
            assert (out.code, out.applied, out.overkill) == ("applied", applied, self.buffered - applied)
            self.hp -= applied
            self.applied += applied
            self.overkill += self.buffered - applied
            self.buffered = 0
            if self.hp == 0:
                self.status = "defeated"
                assert out.defeated
        else:
            assert out.code == "idle" and not out.defeated

    @rule()
    def pause(self):
        if self.status == "live":
            boss_pause(boss=self.boss)
            self.status = "paused"
        else:
            with pytest.raises(InvalidTransition):
                boss_pause(boss=self.boss)

    @rule()
    def resume(self):
        if self.status == "paused":
            boss_resume(boss=self.boss)
            self.status = "live"
        else:
            with pytest.raises(InvalidTransition):
                boss_resume(boss=self.boss)

    @invariant()
    def invariants_hold_and_match_the_model(self):
        if not hasattr(self, "boss"):
            return
        report = boss_verify(boss=self.boss)
        assert report.ok, report.problems
        assert (
            report.hp,
            report.applied,
            report.overkill,
            report.buffered,
            report.accepted,
            report.recovered,
            report.discarded,
            report.status,
        ) == (
            self.hp,
            self.applied,
            self.overkill,
            self.buffered,
            self.accepted,
            self.recovered,
            self.discarded,
            self.status,
        )


@pytest.mark.django_db
def test_random_interleavings_keep_every_invariant():
    run_state_machine_as_test(
        AuthorityMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=35,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
