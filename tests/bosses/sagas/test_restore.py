"""The restore saga and the clients' re-send: a Redis that lost the authority or came back behind
what it acknowledged ends every fight exact (docs/durability.md).

Clients here are the SDK's own bookkeeping (:class:`worldboss_sdk.buffer.LocalBuffer`) driven
over the service calls the gateway makes, against real Redis. A rollback is made with DUMP and
RESTORE of every key of the fight, as an older copy of the data (a lagging replica promoted, a
restored backup) would bring it back.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bosses.models import BossEncounter, SagaKind, SagaRun, SagaStatus
from bosses.sagas.crash import session_fence
from bosses.sagas.restore import RECOVERING, authority_check, authority_check_all
from bosses.services import boss_go_live, boss_tick, event_log_archive
from bosses.verification import boss_verify
from core import authority, keys
from core.errors import AuthorityUnavailable, BossNotLive, SeqGap, UnknownBoss
from tests.support.authority import delta_ingest, heartbeat_record
from worldboss_sdk.buffer import LocalBuffer

pytestmark = pytest.mark.django_db(transaction=True)


class Client:
    """One shard session's SDK buffer, sending over the service calls the gateway makes."""

    def __init__(self, boss: BossEncounter, session) -> None:
        self.boss, self.session = boss, session
        self.buf = LocalBuffer()
        self.buf.keeps = True  # what the SDK does on a welcome with "durable": true
        self.dealt = 0

    def hit(self, amount: int, player: str) -> None:
        self.buf.add(amount, player)
        self.dealt += amount

    def send(self) -> None:
        """One shard tick: the in-flight delta (or a new one); the errors the SDK handles."""
        delta = self.buf.take()
        if delta is None:
            return
        try:
            delta_ingest(
                boss_id=self.boss.pk,
                shard_key=self.session.shard_key,
                epoch=self.session.epoch,
                seq=delta.seq,
                amount=delta.amount,
                breakdown=delta.breakdown or None,
            )
        except SeqGap as err:
            self.buf.realign(int(err.extra["last_seq"]))
            return
        except (AuthorityUnavailable, BossNotLive, UnknownBoss):
            return  # the gateway answers a lost fight as authority_unavailable: same seq later
        self.buf.acked(delta.seq)

    def beat(self) -> None:
        inflight = self.buf.inflight
        result = heartbeat_record(
            boss_id=self.boss.pk,
            shard_key=self.session.shard_key,
            epoch=self.session.epoch,
            pending=self.buf.waiting,
            inflight_seq=inflight.seq if inflight else 0,
            inflight_amount=inflight.amount if inflight else 0,
        )
        self.buf.durable(result.durable_seq)
        self.buf.behind(result.last_seq)


def fight(make_boss, make_session, *, clients: int = 2, policy: str = "fair"):
    boss = make_boss(max_hp=10**12, crash_policy=policy, heartbeat_interval_ms=100, heartbeat_timeout_ms=300)
    boss_go_live(boss=boss)
    return boss, [Client(boss, make_session()) for _ in range(clients)]


def play(boss, clients, rounds: int, *, archive: bool, rng: random.Random) -> None:
    """Rounds of hits, one send each, a tick; heartbeats and (optionally) the archive."""
    for _ in range(rounds):
        for c in clients:
            c.hit(rng.randint(1, 500), f"p{rng.randint(1, 4)}")
            c.send()
        boss_tick(boss_id=boss.pk, force=True)
    if archive:
        event_log_archive(boss=boss)
    for c in clients:
        c.beat()


def settle(boss, clients, *, max_rounds: int = 50) -> None:
    """Heartbeat, then send until every client's damage is acknowledged; tick and archive."""
    for c in clients:
        c.beat()
    for _ in range(max_rounds):
        if not any(c.buf.unacked for c in clients):
            break
        for c in clients:
            c.send()
        boss_tick(boss_id=boss.pk, force=True)
    assert not any(c.buf.unacked for c in clients), [c.buf.unacked for c in clients]
    boss_tick(boss_id=boss.pk, force=True)
    event_log_archive(boss=boss)


def the_fight_is_exact(boss, clients, extra: int = 0) -> None:
    boss.refresh_from_db()
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    assert report.applied == sum(c.dealt for c in clients) + extra


def fight_keys(boss) -> list[str]:
    k = keys.BossKeys(boss.pk)
    return [*k.all(), k.dirty, keys.LIVE_BOSSES, keys.SHARD_EPOCHS]


def snapshot(r, boss) -> dict[str, bytes | None]:
    raw = r.connection_pool.connection_kwargs  # dump needs bytes: use a client without decoding
    import redis

    client = redis.Redis(host=raw.get("host", "127.0.0.1"), port=raw.get("port", 6379), db=raw.get("db", 0))
    dumps = {key: client.dump(key) for key in fight_keys(boss)}
    client.close()
    return dumps


def roll_back(r, dumps: dict[str, bytes | None]) -> None:
    """Bring every key of the fight back as it was when ``dumps`` were taken."""
    import redis

    raw = r.connection_pool.connection_kwargs
    client = redis.Redis(host=raw.get("host", "127.0.0.1"), port=raw.get("port", 6379), db=raw.get("db", 0))
    for key, dump in dumps.items():
        client.delete(key)
        if dump is not None:
            client.restore(key, 0, dump)
    client.close()


def test_a_fight_whose_authority_was_lost_is_restored_from_the_archive_and_ends_exact(
    make_boss, make_session, r
):
    boss, clients = fight(make_boss, make_session)
    rng = random.Random(1)
    play(boss, clients, 5, archive=True, rng=rng)
    play(boss, clients, 4, archive=False, rng=rng)  # acknowledged and ticked, not archived
    r.flushdb()  # total loss (the shard epochs and the live set too)
    assert authority_check(boss=boss) == "lost"
    for c in clients:
        c.hit(7, "late")
        c.send()  # refused: nothing applied, kept for later
    [saga] = authority_check_all()
    assert (saga.kind, saga.status, saga.detail["reason"]) == (SagaKind.RESTORE, SagaStatus.COMPLETED, "lost")
    rebuilt = next(s for s in saga.steps if s["step"] == "rebuild")
    state = authority.read_state(r, boss.pk)
    assert state is not None and state.status == "live" and state.gen == 1
    assert state.version == rebuilt["version"] + 1  # the reopen is a logged version bump
    assert BossEncounter.objects.get(pk=boss.pk).authority_gen == 1
    settle(boss, clients)
    assert sum(c.buf.replayed for c in clients) > 0  # acknowledged deltas came back by re-send
    the_fight_is_exact(boss, clients)
    assert authority_check(boss=boss) == "ok"


def test_an_authority_rolled_back_behind_the_archive_is_restored(make_boss, make_session, r):
    boss, clients = fight(make_boss, make_session, clients=3)
    rng = random.Random(2)
    play(boss, clients, 3, archive=True, rng=rng)
    old = snapshot(r, boss)
    play(boss, clients, 6, archive=True, rng=rng)  # archived: SQL is ahead of the old copy
    roll_back(r, old)
    assert authority_check(boss=boss) == "behind"
    [saga] = authority_check_all()
    assert saga.status == SagaStatus.COMPLETED and saga.detail["reason"] == "behind"
    settle(boss, clients)
    the_fight_is_exact(boss, clients)


def test_a_rolled_back_authority_that_ticked_past_the_archive_is_still_caught(make_boss, make_session, r):
    """Rolled back behind the archive, then ticked on before the check ran: its version is no
    longer behind, but its entry of the archive's newest version is another one."""
    boss, clients = fight(make_boss, make_session)
    rng = random.Random(6)
    play(boss, clients, 2, archive=True, rng=rng)
    old = snapshot(r, boss)
    play(boss, clients, 3, archive=True, rng=rng)
    roll_back(r, old)
    fresh = Client(boss, make_session())  # a client the rollback did not touch keeps ticking it
    for _ in range(6):
        fresh.hit(3, "p9")
        fresh.send()
        boss_tick(boss_id=boss.pk, force=True)
    clients.append(fresh)
    assert authority.read_state(r, boss.pk).version >= max(e for e in [boss.events.count()])
    assert authority_check(boss=boss) == "behind"
    authority_check_all()
    settle(boss, clients)
    the_fight_is_exact(boss, clients)


def test_a_rollback_ahead_of_the_archive_is_repaired_by_the_clients_re_send_alone(make_boss, make_session, r):
    boss, clients = fight(make_boss, make_session)
    rng = random.Random(3)
    play(boss, clients, 4, archive=True, rng=rng)
    old = snapshot(r, boss)
    play(boss, clients, 5, archive=False, rng=rng)  # acknowledged after the copy, never archived
    roll_back(r, old)
    assert authority_check(boss=boss) == "ok"  # not behind anything SQL holds: no restore
    assert authority_check_all() == []
    settle(boss, clients)
    assert sum(c.buf.replayed for c in clients) > 0
    the_fight_is_exact(boss, clients)


def test_a_crash_settlement_lost_by_a_rollback_is_settled_again_exactly_once(make_boss, make_session, r):
    boss, clients = fight(make_boss, make_session, policy="fair")
    rng = random.Random(4)
    play(boss, clients, 3, archive=True, rng=rng)
    old = snapshot(r, boss)
    crashed = clients.pop()
    crashed.hit(40, "gone")
    crashed.beat()  # reports 40 pending (plus whatever was in flight), then dies
    saga = session_fence(boss=boss, shard_key=crashed.session.shard_key, epoch=crashed.session.epoch)
    held = saga.amount
    boss_tick(boss_id=boss.pk, force=True)
    roll_back(r, old)  # the fence and the tick that applied its damage are gone from Redis
    assert authority_check(boss=boss) == "behind"
    authority_check_all()
    settle(boss, clients)
    # the crashed client's acknowledged damage, plus what its saga recovered, exactly once
    the_fight_is_exact(boss, clients, extra=crashed.dealt - crashed.buf.unacked + held)
    assert SagaRun.objects.filter(boss=boss, kind=SagaKind.CRASH).count() == 1


def test_a_restore_in_progress_refuses_damage_and_shows_recovering(make_boss, make_session, r, monkeypatch):
    from bosses.sagas import restore

    boss, clients = fight(make_boss, make_session, clients=1)
    play(boss, clients, 2, archive=True, rng=random.Random(5))
    r.flushdb()

    def reopen_fails(boss):
        def work(saga):
            raise RuntimeError("the reopen step fails")

        return work

    monkeypatch.setattr(restore, "_reopen", reopen_fails)
    with pytest.raises(RuntimeError):
        authority_check_all()  # rebuilt, then the reopen failed: the saga stays running
    assert authority.read_state(r, boss.pk).status == RECOVERING
    c = clients[0]
    c.hit(5, "p1")
    c.send()
    assert c.buf.inflight is not None  # refused as not live: kept for the re-send
    assert authority_check(boss=boss) == "ok"  # recovering: the saga owns it
    monkeypatch.undo()
    monkeypatch.setattr(restore, "RESTORE_RESUME_AFTER_MS", -1_000)  # stale at once
    [saga] = authority_check_all()  # the resume finishes it
    assert saga.status == SagaStatus.COMPLETED and saga.attempts == 2
    settle(boss, clients)
    the_fight_is_exact(boss, clients)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    rounds=st.lists(st.tuples(st.integers(1, 4), st.booleans()), min_size=2, max_size=5),
    loss=st.sampled_from(["none", "lost", "rollback"]),
)
def test_any_schedule_of_archives_rollbacks_and_losses_ends_exact(
    make_boss, make_session, r, seed, rounds, loss
):
    r.flushdb()
    boss, clients = fight(make_boss, make_session)
    rng = random.Random(seed)
    old = None
    for i, (n, archive) in enumerate(rounds):
        play(boss, clients, n, archive=archive, rng=rng)
        if i == 0:
            old = snapshot(r, boss)
    if loss == "lost":
        r.flushdb()
    elif loss == "rollback":
        roll_back(r, old)
    authority_check_all()
    settle(boss, clients)
    the_fight_is_exact(boss, clients)


def test_a_restored_fight_keeps_its_mechanics_and_their_books(make_boss, make_session, r):
    """The phases' multiplier and regeneration, and the mitigated and healed counters, come
    back from the archive and the frozen configuration (docs/liveops.md, "Mechanics")."""
    boss = make_boss(max_hp=100_000, phases="90:Shelled takes 50% regen 1000/s")
    boss_go_live(boss=boss)
    session = make_session("mech-1")
    for seq, amount in enumerate((20_000, 10_001), start=1):  # the second in Shelled: half counts
        delta_ingest(boss_id=boss.pk, shard_key="mech-1", epoch=session.epoch, seq=seq, amount=amount)
        boss_tick(boss_id=boss.pk, force=True)
    before = boss_verify(boss=boss)
    assert before.ok and before.mitigated == 5_001 and before.healed >= 0
    event_log_archive(boss=boss)
    r.flushdb()  # total loss
    [saga] = authority_check_all()
    assert saga.status == SagaStatus.COMPLETED
    state = authority.read_state(r, boss.pk)
    assert state is not None and (state.damage_taken_bp, state.regen_per_s) == (5_000, 1_000)
    fields = r.hgetall(keys.BossKeys(boss.pk).state)
    assert (int(fields["mitigated"]), int(fields["healed"])) == (before.mitigated, before.healed)
    # Below max HP in a regenerating phase: marked for the tick, so it heals unhit.
    assert str(boss.pk) in r.smembers(keys.BossKeys(boss.pk).dirty)
    boss.refresh_from_db()
    assert boss_verify(boss=boss).ok
    session = make_session("mech-2")
    delta_ingest(boss_id=boss.pk, shard_key="mech-2", epoch=session.epoch, seq=1, amount=9)
    out = boss_tick(boss_id=boss.pk, force=True)
    assert (out.applied, out.mitigated) == (4, 5)  # still Shelled: floor(9 / 2)
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    assert report.mitigated == before.mitigated + 5 and report.hp == state.hp + out.healed - 4
