"""The protocol's builders (core/messages.py) and the frame checker the socket tests run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from core import messages
from core.authority import BossState
from core.errors import Fenced, InvalidAmount
from core.wire import error_frame
from tests.support.frame_schema import FrameSchemaError, check, check_frame, check_text, schema_fields


@dataclass
class _Record:
    """A boss's SQL record as the fallback ``state`` reads it (messages.BossRecord)."""

    slug: str
    max_hp: int
    status: str
    final_hp: int | None
    final_version: int | None
    authority_gen: int
    updated_at: datetime | None


def _state() -> messages.StateFrame:
    return messages.state_frame(
        boss="ragnaros",
        hp=750,
        max_hp=1000,
        version=42,
        status="live",
        phase="Enraged",
        phase_index=1,
        ts=1764162000123,
        gen=2,
    )


def _every_frame() -> list[Any]:
    state = _state()
    return [
        state,
        BossState(750, 1000, 42, "live", 1, "Enraged", 1764162000123, "ragnaros", 2).as_message(),
        messages.record_state_frame(
            record=_Record(
                slug="ragnaros",
                max_hp=1000,
                status="draft",
                final_hp=None,
                final_version=None,
                authority_gen=0,
                updated_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        ),
        messages.phase_frame(boss="ragnaros", phase="Frenzy", phase_index=2, version=57, ts=1),
        messages.defeated_frame(
            boss="ragnaros",
            version=90,
            ts=1,
            fight=3,
            leaderboard=[{"rank": 1, "player": "alice", "damage": 900}],
            players=2,
            shards=1,
        ),
        messages.expired_frame(boss="ragnaros", version=91),
        messages.boss_hello_frame(boss="ragnaros", name="Ragnaros"),
        messages.ops_hello_frame(boss="ragnaros", refresh_ms=1000),
        messages.ops_hello_frame(refresh_ms=1000),
        messages.pong_frame(version=43, id=1, echo_id=True),
        messages.pong_frame(id=None, echo_id=True),
        messages.pong_frame(version=43),
        messages.pong_frame(),
        messages.error_body(
            code="seq_gap", detail="seq 5 skips ahead", extras={"last_seq": 2, "ref": "damage"}
        ),
        messages.server_welcome_frame(shard="eu-1", epoch=12, resumed=False),
        messages.player_welcome_frame(shard="web-1", player="hero-42"),
        messages.ack_frame(boss="ragnaros", seq=1, duplicate=False),
        messages.heartbeat_ack_frame(boss="ragnaros", last_seq=7, held=1250, durable_seq=5),
        messages.bye_ack_frame(epoch=12, settled={"ragnaros": 0}),
        messages.attack_ack_frame(boss="ragnaros", damage=112, id=17),
        messages.ops_frame(
            boss="ragnaros",
            name="Ragnaros",
            server_ms=1,
            state=state,
            ledger={"applied": 3},
            buffered=0,
            dps={"window_ms": 10_000, "applied": 0, "dps": 0.0},
            tick={"beat_age_ms": None},
            shards=[],
            health={"ok": 0},
            events=[],
            sagas=[],
            config={"crash_policy": "fair"},
            series=[[1, 750, 42]],
        ),
        messages.overview_frame(
            server_ms=1,
            beat_age_ms=None,
            bosses=[
                {
                    "slug": "ragnaros",
                    "name": "Ragnaros",
                    "status": "live",
                    "hp": 750,
                    "max_hp": 1000,
                    "version": 42,
                    "phase": "Enraged",
                    "dps": 12.5,
                    "buffered": 0,
                    "tick_lag_ms": 0,
                    "shards": {"ok": 1, "late": 0, "crashed": 0},
                    "archive_problem": None,
                }
            ],
        ),
    ]


@pytest.mark.parametrize("frame", _every_frame(), ids=lambda f: f["type"])
def test_every_builder_makes_a_frame_of_its_schema(frame):
    check_frame(frame)


def test_every_frame_type_has_a_builder_here():
    assert {f["type"] for f in _every_frame()} == set(messages.FRAMES)


def test_the_http_bodies_pass_their_schemas():
    state = _state()
    body = messages.state_api_body(
        state=state,
        name="Ragnaros",
        shards=[{"key": "eu-1", "name": "EU 1", "region": "eu", "status": "online"}],
        next_spawn_at=None,
    )
    check(messages.StateApiBody, body)
    spawning = messages.state_api_body(
        state=state, name="Ragnaros", shards=[], next_spawn_at=datetime(2027, 6, 5, 18, tzinfo=UTC)
    )
    check(messages.StateApiBody, spawning)
    assert spawning["next_spawn_at"] == "2027-06-05T18:00:00+00:00"
    live = messages.api_live_state(state=state)
    check(messages.ApiLiveState, live)
    assert live["ts_ms"] == state["ts"]  # the API's public name of the same field


def test_every_state_sender_has_the_same_fields():
    """The authority's state and the SQL record's fallback are one shape: ts and gen included."""
    from_authority = BossState(750, 1000, 42, "live", 1, "Enraged", 1764162000123, "ragnaros", 2).as_message()
    written = datetime(2026, 1, 1, tzinfo=UTC)
    from_record = messages.record_state_frame(
        record=_Record(
            slug="ragnaros",
            max_hp=1000,
            status="defeated",
            final_hp=0,
            final_version=90,
            authority_gen=2,
            updated_at=written,
        )
    )
    assert from_authority.keys() == from_record.keys()
    assert from_record["ts"] == int(written.timestamp() * 1000)
    assert from_record["gen"] == 2
    assert (from_record["hp"], from_record["version"]) == (0, 90)


def test_a_draft_never_went_live_so_its_ts_is_null():
    draft = messages.record_state_frame(
        record=_Record(
            slug="x",
            max_hp=10,
            status="draft",
            final_hp=None,
            final_version=None,
            authority_gen=0,
            updated_at=datetime.now(UTC),
        )
    )
    assert (draft["ts"], draft["hp"], draft["version"]) == (None, 10, 0)


def test_error_frames_of_typed_errors_pass_the_schema():
    check_text(error_frame(InvalidAmount("bad", field="amount"), ref="damage", boss="b", seq=7, id=None))
    check_text(error_frame(Fenced("retired", last_seq=7, policy="fair", settled=350), close=None))


def test_the_checker_refuses_a_missing_key():
    frame = dict(_state())
    del frame["gen"]
    with pytest.raises(FrameSchemaError, match=r"missing key\(s\) \['gen'\]"):
        check_frame(frame)


def test_the_checker_refuses_an_unknown_key():
    with pytest.raises(FrameSchemaError, match=r"unknown key\(s\) \['colour'\]"):
        check_frame({**_state(), "colour": "red"})


@pytest.mark.parametrize(
    ("field", "value"),
    [("hp", "750"), ("hp", True), ("ts", 1.5), ("boss", None), ("type", "State")],
)
def test_the_checker_refuses_a_wrong_type(field, value):
    with pytest.raises(FrameSchemaError, match=field if field != "type" else "State"):
        check_frame({**_state(), field: value})


def test_the_checker_looks_into_nested_values():
    good = messages.defeated_frame(boss="b", version=1, ts=1, fight=1, leaderboard=[], players=0, shards=0)
    with pytest.raises(FrameSchemaError, match=r"leaderboard\[0\]: missing"):
        check_frame({**good, "leaderboard": [{"rank": 1, "player": "a"}]})
    with pytest.raises(FrameSchemaError, match=r"settled\.b"):
        check_frame({**messages.bye_ack_frame(epoch=1, settled={}), "settled": {"b": "0"}})
    ops_hello = messages.ops_hello_frame(refresh_ms=1000)
    with pytest.raises(FrameSchemaError, match="not one of"):
        check_frame({**ops_hello, "channel": "shard"})


def test_the_checker_refuses_a_frame_type_it_does_not_know():
    with pytest.raises(FrameSchemaError, match="no schema"):
        check_frame({"type": "damage", "boss": "b", "seq": 1, "amount": 1})


def test_optional_keys_may_be_absent_but_not_unknown():
    assert schema_fields(messages.WelcomeFrame) == {
        "type": True,
        "v": True,
        "role": True,
        "shard": True,
        "epoch": False,
        "resumed": False,
        "durable": False,
        "player": False,
    }


def test_every_socket_client_of_the_tests_checks_what_it_receives():
    """The autouse hook of tests/conftest.py is in place on both clients the tests use."""
    from channels.testing import WebsocketCommunicator
    from websockets.asyncio.client import ClientConnection

    assert hasattr(WebsocketCommunicator.receive_from, "__wrapped__")
    assert hasattr(ClientConnection.recv, "__wrapped__")
