"""LocalBuffer.held_breakdown: who holds the damage a heartbeat reports (pending, re-sends
queued after a rollback, the in-flight delta), bounded like a delta's breakdown."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from worldboss_sdk.buffer import LocalBuffer
from worldboss_sdk.protocol import MAX_BREAKDOWN_ENTRIES, MAX_DELTA_AMOUNT


def reported_held(buf: LocalBuffer) -> int:
    return buf.waiting + (buf.inflight.amount if buf.inflight else 0)


def test_pending_players_then_the_in_flight_delta_unattributed_left_out():
    buf = LocalBuffer()
    buf.add(100, "a")
    buf.add(30)  # no player
    buf.add(50, "b")
    delta = buf.take()
    assert delta is not None and delta.breakdown == {"a": 100, "b": 50}
    buf.add(20, "c")
    buf.add(5, "a")
    assert buf.held_breakdown() == {"c": 20, "a": 105, "b": 50}
    # Pending first, the in-flight delta's players last: the platform cuts from the end.
    assert list(buf.held_breakdown()) == ["c", "a", "b"]
    assert reported_held(buf) == 205
    assert buf.acked(delta.seq)
    assert buf.held_breakdown() == {"c": 20, "a": 5}


def test_nothing_held_nothing_reported():
    buf = LocalBuffer()
    assert buf.held_breakdown() == {}
    buf.add(10)
    assert buf.held_breakdown() == {}


def test_re_sends_queued_after_a_rollback_are_reported():
    buf = LocalBuffer()
    buf.durable(0)  # the platform reports durability: acked deltas are kept
    for seq, player in ((1, "a"), (2, "b"), (3, "c")):
        buf.add(10 * seq, player)
        delta = buf.take()
        assert delta is not None and delta.seq == seq and buf.acked(seq)
    assert buf.held_breakdown() == {}
    buf.realign(1)  # the authority came back at seq 1: seqs 2 and 3 go out again
    assert buf.inflight is not None and buf.inflight.seq == 2 and [d.seq for d in buf.queued] == [3]
    assert buf.held_breakdown() == {"c": 30, "b": 20}
    assert sum(buf.held_breakdown().values()) <= reported_held(buf) == 50


def test_bounded_to_max_breakdown_entries():
    buf = LocalBuffer(max_players=MAX_BREAKDOWN_ENTRIES * 3)
    for i in range(MAX_BREAKDOWN_ENTRIES + 10):
        buf.add(1, f"p{i}")
    buf.take()  # MAX_BREAKDOWN_ENTRIES players in flight, 10 still pending
    for i in range(MAX_BREAKDOWN_ENTRIES * 2):
        buf.add(2, f"q{i}")
    out = buf.held_breakdown()
    assert len(out) == MAX_BREAKDOWN_ENTRIES
    assert list(out)[:10] == [f"p{i}" for i in range(MAX_BREAKDOWN_ENTRIES, MAX_BREAKDOWN_ENTRIES + 10)]
    assert sum(out.values()) <= reported_held(buf)


def test_a_capped_report_gets_a_breakdown_that_fits():
    buf = LocalBuffer()
    buf.add(MAX_DELTA_AMOUNT - 10, "a")
    delta = buf.take()
    assert delta is not None
    buf.durable(0)
    buf.acked(delta.seq)
    buf.add(10, "b")
    buf.realign(0)  # seq 1 re-sent: in flight again, b pending
    out = buf.held_breakdown()
    assert sum(out.values()) <= reported_held(buf)
    assert all(v > 0 and isinstance(v, int) for v in out.values())


ops = st.lists(
    st.one_of(
        st.tuples(st.just("hit"), st.integers(1, 1_000), st.sampled_from(["a", "b", "c", "d", None])),
        st.tuples(st.just("take"), st.just(0), st.none()),
        st.tuples(st.just("ack"), st.just(0), st.none()),
        st.tuples(st.just("realign"), st.integers(0, 5), st.none()),
        st.tuples(st.just("fenced"), st.integers(0, 3_000), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ops=ops, keeps=st.booleans())
def test_breakdown_never_exceeds_what_each_player_holds(ops, keeps):
    buf = LocalBuffer()
    if keeps:
        buf.durable(0)
    for kind, n, player in ops:
        if kind == "hit":
            buf.add(n, player)
        elif kind == "take":
            buf.take()
        elif kind == "ack" and buf.inflight is not None:
            buf.acked(buf.inflight.seq)
        elif kind == "realign":
            buf.realign(n)
        elif kind == "fenced":
            buf.fenced(last_seq=0, settled=n)
        out = buf.held_breakdown()
        holds: dict[str, int] = dict(buf.players)
        for delta in [*buf.queued, *([buf.inflight] if buf.inflight else [])]:
            for p, d in delta.breakdown.items():
                holds[p] = holds.get(p, 0) + d
        assert len(out) <= MAX_BREAKDOWN_ENTRIES
        assert sum(out.values()) <= reported_held(buf)
        assert all(0 < d <= holds[p] for p, d in out.items())
        # Nothing cut when it all fits: every attributed hit is reported.
        assert out == {p: d for p, d in holds.items() if d > 0}


def test_a_fence_drops_the_reported_players_first():
    """A fair saga credited the players the last heartbeat named (less the deltas accepted
    since): their damage is what the buffer gives up, so the rest sent under the new epoch is
    not credited to them twice."""
    buf = LocalBuffer()
    buf.add(40)  # no player
    buf.add(100, "a")
    delta = buf.take()
    assert delta is not None
    buf.add(30, "b")
    buf.add(20, "c")
    assert buf.held_breakdown() == {"b": 30, "c": 20, "a": 100}
    assert buf.acked(delta.seq)  # seq 1 landed after the heartbeat: a is no longer held
    assert buf.reported == {"b": 30, "c": 20}
    buf.add(5, "b")  # after the heartbeat: not reported, still held
    # The platform held 190 - 140 = 50, credited b 30 and c 20, and settled 50.
    assert buf.fenced(last_seq=1, settled=50) == 5
    assert buf.players == {"b": 5} and buf.unattributed == 0 and buf.reported == {}


def test_a_fence_with_the_in_flight_delta_accepted_unreports_it():
    buf = LocalBuffer()
    buf.add(60, "a")
    buf.take()
    buf.add(10, "b")
    buf.add(15)
    assert buf.held_breakdown() == {"b": 10, "a": 60}
    # seq 1 was accepted before the fence (its ack never came); the saga settled the 25 left.
    assert buf.fenced(last_seq=1, settled=25) == 0
    assert buf.players == {} and buf.unattributed == 0 and buf.dropped == 25


def test_giving_up_on_a_boss_that_is_over_counts_the_in_flight_delta_as_dropped():
    buf = LocalBuffer()
    buf.add(60, "a")
    buf.take()
    buf.add(10, "b")
    assert buf.drop_all() == 70
    assert buf.dropped == 70 and buf.unacked == 0 and buf.pending == 0


def test_held_parts_keep_the_in_flight_delta_apart():
    buf = LocalBuffer()
    buf.add(50, "bob")
    delta = buf.take()
    assert delta is not None
    buf.add(50)  # no player
    buf.add(100, "ann")
    buf.add(5, "bob")
    assert buf.held_parts() == ({"ann": 100, "bob": 5}, {"bob": 50})
    assert buf.reported == {"ann": 100, "bob": 55}
    assert buf.acked(delta.seq)
    assert buf.held_parts() == ({"ann": 100, "bob": 5}, {})


def test_a_fence_drops_what_the_platform_credited_when_the_last_report_was_lost():
    """The platform credited the report it had (ann 100; 30 unattributed); the later heartbeat
    naming bob never arrived. Dropping by the platform's ``credited`` keeps bob's damage to
    send again under the new epoch (dropping by the buffer's own last report would lose it)."""
    buf = LocalBuffer()
    buf.add(100, "ann")
    buf.add(30)
    assert buf.held_parts() == ({"ann": 100}, {})  # recorded: held 130
    buf.add(30, "bob")
    buf.held_parts()  # lost on the way
    assert buf.fenced(last_seq=0, settled=130, credited={"ann": 100}) == 30
    assert buf.players == {"bob": 30} and buf.unattributed == 0
