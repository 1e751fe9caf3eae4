"""Property-based: per-player credit is exact across fair crash settlements.

The SDK's buffer (worldboss_sdk.buffer.LocalBuffer) against the real ingest, heartbeat and
fence scripts on a real Redis, over a network the test controls: frames in transit are
delivered in any order or lost, acknowledgements are lost, and the session is fenced at any
point (a heartbeat delivered after a later delta is stale). Whatever the interleaving, once everything left is delivered and ticked, every
player's credit (the ``players`` hash rewards are paid from) equals what that player's hits
generated, and the boss's applied damage equals all hits.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bosses.models import BossEncounter
from bosses.sagas.crash import session_fence
from bosses.services import boss_go_live, boss_tick
from bosses.verification import boss_verify
from core import keys
from core.errors import Fenced
from core.redis import get_redis
from shards.models import Shard
from shards.services import shard_create, shard_session_open
from tests.support.authority import delta_ingest, heartbeat_record
from worldboss_sdk.buffer import Delta, LocalBuffer

_ids = itertools.count(1)
PLAYERS = ["ann", "bob", "cid", "dee"]


@dataclass(frozen=True)
class Beat:
    epoch: int
    pending: int
    inflight: Delta | None
    part: dict[str, int]
    flight: dict[str, int]
    sent: int


@dataclass(frozen=True)
class Damage:
    epoch: int
    delta: Delta


class GameServer:
    """One shard's buffer and the frames it has in transit (what the SDK client does with
    ``ack``, ``heartbeat_ack`` and ``fenced``, without sockets)."""

    def __init__(self, boss: BossEncounter) -> None:
        self.boss = boss
        self.key = f"fc{next(_ids)}"
        shard_create(key=self.key, name=self.key)
        self.epoch = self._open()
        self.buf = LocalBuffer()
        self.transit: list[Beat | Damage] = []
        self.generated: dict[str, int] = {}
        self.total = 0

    def _open(self) -> int:
        return shard_session_open(shard=Shard.objects.get(key=self.key)).epoch

    def hit(self, player: str | None, amount: int) -> None:
        self.buf.add(amount, player)
        self.total += amount
        if player is not None:
            self.generated[player] = self.generated.get(player, 0) + amount

    def send(self) -> None:
        delta = self.buf.take()  # the in-flight delta again, or a new one
        if delta is not None:
            self.transit.append(Damage(self.epoch, delta))

    def beat(self) -> None:
        part, flight = self.buf.held_parts()
        beat = Beat(self.epoch, self.buf.waiting, self.buf.inflight, part, flight, self.buf.next_seq - 1)
        self.transit.append(beat)

    def deliver(self, frame: Beat | Damage, *, ack_lost: bool = False) -> None:
        if frame.epoch != self.epoch:
            return  # an old epoch's frame: fenced, and the client already moved on
        args = {"boss_id": self.boss.pk, "shard_key": self.key, "epoch": self.epoch}
        try:
            if isinstance(frame, Damage):
                d = frame.delta
                delta_ingest(**args, seq=d.seq, amount=d.amount, breakdown=d.breakdown or None)
                if not ack_lost:
                    self.buf.acked(d.seq)
                return
            f = frame.inflight
            ack = heartbeat_record(
                **args,
                pending=frame.pending,
                inflight_seq=f.seq if f else 0,
                inflight_amount=f.amount if f else 0,
                breakdown=frame.part,
                inflight_breakdown=frame.flight if f else None,
                sent=frame.sent,
            )
            inflight = self.buf.inflight
            if not ack_lost and inflight is not None and inflight.seq <= ack.last_seq:
                self.buf.acked(inflight.seq)  # it had landed; its ack was lost
        except Fenced as err:
            credited = err.extra.get("credited")
            self.buf.fenced(
                last_seq=int(err.extra["last_seq"]),
                settled=int(err.extra["settled"]),
                credited=credited if isinstance(credited, dict) else None,
            )
            self.epoch = self._open()
            self.transit = []

    def crash(self) -> None:
        """Declared crashed now (the game server does not know yet)."""
        session_fence(boss=self.boss, shard_key=self.key, epoch=self.epoch)

    def drain(self) -> None:
        """The network heals: every frame left is delivered, then everything held is sent."""
        for frame in list(self.transit):
            self.deliver(frame)
        self.transit = []
        for _ in range(1_000):
            if self.buf.unacked == 0:
                return
            delta = self.buf.take()
            assert delta is not None
            self.deliver(Damage(self.epoch, delta))
        raise AssertionError(f"still held: {self.buf.unacked}")


ops = st.lists(
    st.one_of(
        st.tuples(st.just("hit"), st.sampled_from([*PLAYERS, None]), st.integers(1, 500)),
        st.tuples(st.just("send"), st.none(), st.just(0)),
        st.tuples(st.just("beat"), st.none(), st.just(0)),
        st.tuples(st.just("deliver"), st.booleans(), st.integers(0, 7)),  # ack lost?, which frame
        st.tuples(st.just("lose"), st.none(), st.integers(0, 7)),
        st.tuples(st.just("crash"), st.none(), st.just(0)),
    ),
    max_size=60,
)


@pytest.mark.django_db
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=ops)
# The case seen over a slow link: bob's delta in flight, unattributed damage pending, the delta
# accepted just before the heartbeat that reported it is recorded, then the session is fenced.
@example(
    ops=[
        ("hit", "bob", 50),
        ("send", None, 0),
        ("hit", None, 50),
        ("hit", "ann", 100),
        ("beat", None, 0),
        ("deliver", False, 0),
        ("deliver", False, 0),
        ("crash", None, 0),
    ]
)
def test_every_players_credit_is_exactly_what_their_hits_generated(ops):
    n = next(_ids)
    boss = BossEncounter.objects.create(
        name=f"FC{n}", slug=f"fc-{n}", max_hp=10**9, crash_policy="fair", phases="50:A"
    )
    boss_go_live(boss=boss)
    game = GameServer(boss)
    for kind, arg, n in ops:
        if kind == "hit":
            game.hit(arg, n)
        elif kind == "send":
            game.send()
        elif kind == "beat":
            game.beat()
        elif kind == "deliver" and game.transit:
            game.deliver(game.transit.pop(n % len(game.transit)), ack_lost=arg)
        elif kind == "lose" and game.transit:
            game.transit.pop(n % len(game.transit))
        elif kind == "crash":
            game.crash()
    game.drain()
    boss_tick(boss_id=boss.pk, force=True)
    credit = {p: int(v) for p, v in get_redis().hgetall(keys.BossKeys(boss.pk).players).items()}
    assert credit == game.generated
    report = boss_verify(boss=boss)
    assert report.ok, report.problems
    assert report.applied == game.total
