"""The Lua scripts write JSON with cjson (core/lua/lib/json.lua, lib/breakdown.lua): whatever
a key holds, the event log's ``d``/``s``/``p`` and a session's held breakdown decode, with
whole numbers exact up to 2^53 (cjson alone would round them to 14 digits). Real Redis; the
ids are written straight into the hashes, past the validation that normally stops them."""

from __future__ import annotations

import json
from pathlib import Path

from core import authority, keys

NASTY = ['q"uote', "back\\slash", "nl\n", "nul\x00", "tab\t", "é-ü", "</script>"]
BOSS = 31


def _seed(r) -> None:
    call = authority.seed_call(
        boss_id=BOSS,
        max_hp=2**52,
        phases=[],
        opening="Calm",
        fight=1,
        slug="lua-json",
        min_tick_ms=0,
        floors={},
    )
    assert authority.run(r, call).code == "ok"


def test_the_tick_log_entry_is_valid_json_whatever_the_ids_hold(r):
    _seed(r)
    k = keys.BossKeys(BOSS)
    session = keys.session_id("eu-1", 1)
    r.hset(k.buf, mapping={session: 2**50 + 3, 'odd"sess\n': 2})
    r.hset(k.seq, mapping={session: 2**53 - 1})
    r.hset(k.pbuf, mapping={name: 10**15 + i for i, name in enumerate(NASTY)})
    ticked = authority.run(r, authority.tick_call(boss_id=BOSS, force=True))
    assert (ticked.code, ticked.applied) == ("applied", 2**50 + 5)
    (_, entry), *_ = r.xrevrange(k.log, count=1)
    assert json.loads(entry["d"]) == {session: 2**50 + 3, 'odd"sess\n': 2}
    assert json.loads(entry["s"]) == {session: 2**53 - 1, 'odd"sess\n': 0}
    assert json.loads(entry["p"]) == {name: 10**15 + i for i, name in enumerate(NASTY)}
    assert r.hgetall(k.players) == {name: str(10**15 + i) for i, name in enumerate(NASTY)}


def test_an_empty_tick_breakdown_is_an_empty_object(r):
    _seed(r)
    k = keys.BossKeys(BOSS)
    r.hset(k.buf, keys.session_id("eu-1", 1), 5)
    authority.run(r, authority.tick_call(boss_id=BOSS, force=True))
    (_, entry), *_ = r.xrevrange(k.log, count=1)
    assert (json.loads(entry["s"]), entry["p"]) == ({keys.session_id("eu-1", 1): 0}, "{}")


def test_a_held_breakdown_is_valid_json_whatever_the_ids_hold(r):
    _seed(r)
    held = {name: 2**37 + i for i, name in enumerate(NASTY[:4])}  # each < 2^40, the sum too
    call = authority.heartbeat_call(boss_id=BOSS, shard_key="eu-2", epoch=1, pending=2**40, breakdown=held)
    assert authority.run(r, call).code == "ok"
    raw = r.hget(keys.BossKeys(BOSS).heldby, keys.session_id("eu-2", 1))
    flat = json.loads(raw)
    assert dict(zip(flat[::2], flat[1::2])) == held
    fenced = authority.run(r, authority.fence_call(boss_id=BOSS, shard_key="eu-2", epoch=1, policy="fair"))
    assert fenced.code == "fenced"
    flat = json.loads(r.hget(keys.BossKeys(BOSS).heldby, keys.session_id("eu-2", 1)))
    assert dict(zip(flat[::2], flat[1::2])) == held  # what the fair saga credited, as JSON


def test_no_script_pastes_text_into_json():
    """Every JSON a script writes goes through cjson.encode (lib/json.lua, whose keys are
    cjson's too, for objects of whole numbers)."""
    lua = Path(authority.LUA_DIR)
    for path in [*lua.glob("*.lua"), *lua.glob("lib/*.lua")]:
        if path.name == "json.lua":
            continue
        source = path.read_text()
        for bad in ("'\"' ..", "'{' ..", "'[' .."):
            assert bad not in source, (path.name, bad)
