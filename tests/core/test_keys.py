"""core/keys.py is the one place that names Redis keys and channels.

Three guards:

* a scan of every source file of the tree (git-tracked, plus new files not ignored; Python,
  Lua, JS, templates; product code, tools and tests alike) that fails, with ``file:line``,
  on a key or channel name spelled anywhere but core/keys.py (and this file, which spells
  the forms the scan must catch). Tests are held to the same rule: a test that spells a key
  can keep passing against a layout the product no longer uses;
* unit tests of the names themselves (hash tags, the channel round trip, session fields);
* hash slots: every multi-key command of the product (each Lua script, a boss's reset, the
  crash scan's MGET, a benchmark run's transaction) uses keys of one Redis Cluster slot,
  checked with the cluster's CRC16 and, when ``redis-server`` is installed, on a real
  cluster-mode Redis that refuses cross-slot commands.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from core import authority, keys
from tools.stack import free_port, redis_server_argv

ROOT = Path(__file__).resolve().parents[2]
SOURCE_SUFFIXES = (".py", ".lua", ".js", ".html")
KEYS_MODULE = "core/keys.py"
THIS_FILE = Path(__file__).resolve().relative_to(ROOT).as_posix()

_NAMES = "|".join(keys.BOSS_KEY_NAMES)
_QUOTE = "[\"'`]"
FORBIDDEN = [
    ("boss hash tag", re.compile(re.escape(keys.BOSS_TAG_PREFIX))),
    ("global key", re.compile(r"(?<![\w.-])" + re.escape(keys.GLOBAL_PREFIX) + r"(?=[\w{])")),
    ("crash-scan hash tag", re.compile(re.escape(keys.CRASH_SCAN_TAG))),
    ("recovered-field suffix", re.compile(re.escape(keys.RECOVERED_SUFFIX))),
    # "boss:" right before an id, a placeholder or the end of a string: the state channel
    # (prose such as "boss: <name>" has a space after the colon)
    ("state channel", re.compile(r"(?<![\w-])" + re.escape(keys.STATE_CHANNEL_PREFIX) + r"(?=[{\d%$\"'`])")),
    # a key or channel suffix appended to a placeholder or a string: f"{tag}:buf", '..:state'
    ("boss key suffix", re.compile(r"[}\"'`]:(?:" + _NAMES + r")(?=[\"'`]|$)")),
    ("benchmark key", re.compile(r"(?<![\w-])" + re.escape(keys.BENCH_PREFIX) + r"(?=[{\w\"'`])")),
]


def _source_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    names = {name for name in out.stdout.decode().split("\0") if name.endswith(SOURCE_SUFFIXES)}
    return sorted(name for name in names - {KEYS_MODULE, THIS_FILE} if (ROOT / name).is_file())


def _key_literals(text: str) -> Iterator[tuple[int, str, str]]:
    for lineno, line in enumerate(text.splitlines(), 1):
        for what, pattern in FORBIDDEN:
            if pattern.search(line):
                yield lineno, what, line.strip()


def test_the_scan_sees_the_tree_and_knows_a_key_literal_when_it_sees_one() -> None:
    files = _source_files()
    assert "core/authority.py" in files and "core/lua/fence.lua" in files
    assert any(name.endswith(".js") for name in files) and any(name.endswith(".html") for name in files)
    assert KEYS_MODULE not in files and THIS_FILE not in files
    # Every form of a name core/keys.py hands out is caught when spelled out elsewhere...
    spelled = [
        *keys.BossKeys(7).all(),
        *keys.GLOBAL_KEYS,
        keys.state_channel(7),
        keys.recovered_field(keys.session_id("eu-1", 3)),
        keys.bench_key("run", "hp"),
    ]
    for name in spelled:
        assert list(_key_literals(f"r.get({json.dumps(name)})")), name
        assert list(_key_literals(f"redis.call('GET', '{name}')")), name
    # ...and so is building one by hand from its parts.
    built = [
        'f"{{boss:{boss_id}}}:buf"',
        'f"' + keys.STATE_CHANNEL_PREFIX + '{boss_id}:state"',
        "'" + keys.STATE_CHANNEL_PREFIX + "' .. id .. ':state'",
        "sess .. '" + keys.RECOVERED_SUFFIX + "'",
        "`" + keys.STATE_CHANNEL_PREFIX + "${id}:state`",
        'tag + ":log"',
    ]
    for code in built:
        assert list(_key_literals(code)), code
    # Prose and unrelated strings are not keys.
    for code in (
        'f"boss: {boss.name}"',
        "def f(*, boss: BossEncounter) -> None:",
        "liveops.asgi:application",
        "verify_boss: OK",
        'f"bench: Redis {how}"',
        'logger.info("state %s", s)',
    ):
        assert not list(_key_literals(code)), code


def test_no_key_or_channel_name_is_spelled_outside_core_keys() -> None:
    found = [
        f"{name}:{lineno}: {what}: {line}"
        for name in _source_files()
        for lineno, what, line in _key_literals((ROOT / name).read_text(errors="replace"))
    ]
    assert not found, (
        "Redis key or channel names spelled outside core/keys.py (use core.keys):\n" + "\n".join(found)
    )


# --- the names ----------------------------------------------------------------------------


@pytest.mark.parametrize("boss_id", [0, 1, 7, 11, 123_456_789_012])
def test_every_key_of_a_boss_is_on_its_hash_tag(boss_id: int) -> None:
    k = keys.BossKeys(boss_id)
    assert k.tag == f"{keys.BOSS_TAG_PREFIX}{boss_id % keys.TICK_BUCKETS}}}"
    names = k.all()
    assert names == [getattr(k, name) for name in keys.BOSS_KEY_NAMES]
    assert len(set(names)) == len(keys.BOSS_KEY_NAMES)
    for name in keys.BOSS_KEY_NAMES:
        assert getattr(k, name) == f"{k.tag}:{boss_id}:{name}"
    # The tag is the first {...} of each key, so it is what Redis Cluster hashes; the bucket's
    # dirty set, which the scripts write with the boss's keys, has the same one.
    assert {key.split("}", 1)[0] + "}" for key in [*names, k.dirty]} == {k.tag}
    assert k.dirty == keys.dirty_key(keys.tick_bucket(boss_id)) and k.dirty not in names


def test_bosses_of_one_bucket_share_a_tag_and_never_a_key() -> None:
    same = [3, 3 + keys.TICK_BUCKETS, 3 + 5 * keys.TICK_BUCKETS]
    assert len({keys.BossKeys(b).tag for b in same}) == 1
    assert len({keys.BossKeys(b).dirty for b in same}) == 1
    all_keys = [key for b in same for key in keys.BossKeys(b).all()]
    assert len(set(all_keys)) == len(all_keys)


def test_keys_of_different_bosses_never_collide() -> None:
    # 1 vs 11 vs 111: the closing brace keeps one id from being a prefix of another's keys.
    ids = [1, 11, 111, 2, 21]
    all_keys = [key for boss_id in ids for key in keys.BossKeys(boss_id).all()]
    assert len(set(all_keys)) == len(all_keys)
    assert not set(all_keys) & set(keys.GLOBAL_KEYS)


def test_global_keys_are_distinct_and_outside_every_boss_tag() -> None:
    assert len(set(keys.GLOBAL_KEYS)) == len(keys.GLOBAL_KEYS)
    for name in keys.GLOBAL_KEYS:
        assert name.startswith(keys.GLOBAL_PREFIX)
        assert keys.BOSS_TAG_PREFIX not in name


@pytest.mark.parametrize("boss_id", [0, 1, 42, 10**15, 2**63 - 1])
def test_state_channel_round_trips(boss_id: int) -> None:
    channel = keys.state_channel(boss_id)
    assert keys.state_channel_boss_id(channel.encode()) == boss_id
    assert keys.state_channel_boss_id(channel) == boss_id
    # A channel is not a key of the boss (pub/sub names live in their own namespace, but
    # a shared name would still confuse anyone reading MONITOR output).
    assert channel not in keys.BossKeys(boss_id).all()


def _junk_channels() -> list[bytes]:
    good = keys.state_channel(12)
    prefix, suffix = keys.STATE_CHANNEL_PREFIX, keys.STATE_CHANNEL_SUFFIX
    junk = [
        "",
        prefix,
        suffix,
        prefix + suffix,
        good.replace("12", ""),
        good.replace("12", "012"),  # one boss, one channel name: no leading zero
        good.replace("12", "-12"),
        good.replace("12", "+12"),
        good.replace("12", " 12"),
        good.replace("12", "1_2"),
        good.replace("12", "\u0661\u0662"),  # Arabic-Indic 12: digits to str.isdigit, not an id
        good.replace("12", "9" * 21),
        good + ":x",
        good + "s",
        good.removesuffix(suffix),
        good.removesuffix(suffix) + ":buf",
        "x" + good,
        good.upper(),
        keys.BossKeys(12).state,
        keys.LIVE_BOSSES,
    ]
    return [j.encode() for j in junk]


@pytest.mark.parametrize("junk", _junk_channels())
def test_state_channel_boss_id_rejects_junk(junk: bytes) -> None:
    assert keys.state_channel_boss_id(junk) is None


def test_session_fields_round_trip_and_junk_is_refused() -> None:
    session = keys.session_id("eu-1", 3)
    assert keys.parse_session(session) == keys.SessionField("eu-1", 3, recovered=False)
    twin = keys.parse_session(keys.recovered_field(session))
    assert twin == keys.SessionField("eu-1", 3, recovered=True)
    assert twin is not None and twin.session == session
    # hosted shard keys contain dashes; the epoch is whatever follows the last separator
    assert keys.parse_session(keys.session_id("hosted-eu-2", 17)) == keys.SessionField("hosted-eu-2", 17)
    for junk in (
        "",
        "eu-1",
        keys.SESSION_SEPARATOR + "3",
        "eu-1" + keys.SESSION_SEPARATOR,
        "eu-1" + keys.SESSION_SEPARATOR + "x",
        "eu-1" + keys.SESSION_SEPARATOR + "\uff13",  # a full-width 3 is not an epoch
        keys.recovered_field(session) + "x",
        keys.recovered_field(keys.recovered_field(session)),
    ):
        assert keys.parse_session(junk) is None, junk


def test_session_fields_are_json_safe_for_the_tick_log() -> None:
    # tick.lua writes buffer field names into the log entry's JSON without escaping them.
    for name in (keys.session_id("eu_1-x", 2**40), keys.recovered_field(keys.session_id("eu-1", 1))):
        assert json.loads('{"' + name + '": 1}') == {name: 1}
        assert not set(name) & {'"', "\\"} and name.isprintable()


# --- hash slots ---------------------------------------------------------------------------


def _slot(name: str) -> int:
    return key_slot(name.encode())


def _calls(boss_id: int) -> dict[str, authority.Call[object]]:
    """One call of every script (the keys a script gets do not depend on its other args)."""
    return {
        "seed": authority.seed_call(
            boss_id=boss_id,
            max_hp=1_000,
            phases=[(500, "Enraged")],
            opening="Calm",
            fight=1,
            slug="slots",
            min_tick_ms=0,
            floors={"eu-0": 2},
        ),
        "ingest": authority.ingest_call(
            boss_id=boss_id, shard_key="eu-1", epoch=1, seq=1, amount=100, breakdown={"alice": 100}
        ),
        "heartbeat": authority.heartbeat_call(
            boss_id=boss_id, shard_key="eu-2", epoch=1, pending=40, inflight_seq=0, inflight_amount=0
        ),
        "fence": authority.fence_call(boss_id=boss_id, shard_key="eu-2", epoch=1, policy="fair"),
        "tick": authority.tick_call(boss_id=boss_id, force=True),
        "transition": authority.transition_call(boss_id=boss_id, to="paused", allowed_from=("live",)),
        "restore": authority.restore_call(boss_id=boss_id, incarnation="", gen=1, snapshot="{}"),
        "rate": authority.rate_call(boss_id=boss_id, players=["alice", "guest:x"], attacks_per_second=5),
    }


def test_every_script_call_uses_keys_of_one_slot() -> None:
    calls = _calls(5)
    assert set(calls) == set(authority.SCRIPT_NAMES)  # a new script gets a case here
    slot = _slot(keys.BossKeys(5).state)
    for name, call in calls.items():
        assert call.script == name
        assert {_slot(key) for key in call.keys} == {slot}, name


@pytest.mark.parametrize("boss_id", [1, 2, 99, 10**9])
def test_all_keys_of_a_boss_hash_to_one_slot(boss_id: int) -> None:
    # a boss's reset deletes them in one DEL; its selectors read several in one MULTI
    k = keys.BossKeys(boss_id)
    assert {_slot(key) for key in k.all()} == {key_slot(k.tag[1:-1].encode())}


def test_bosses_spread_across_slots() -> None:
    slots = {_slot(keys.BossKeys(boss_id).state) for boss_id in range(1, 10_001)}
    # one slot per bucket (CRC16 of distinct tags: a handful of collisions at most)
    assert keys.TICK_BUCKETS - 5 <= len(slots) <= keys.TICK_BUCKETS


def test_keys_read_together_share_a_slot() -> None:
    # the crash scan MGETs these two; a benchmark run WATCHes and DELs its keys together
    assert _slot(keys.CRASH_SCAN_LAST) == _slot(keys.CRASH_SCAN_SINCE)
    assert len({_slot(keys.bench_key("a1b2", name)) for name in ("hp", "ver", "lock")}) == 1


@pytest.fixture
def cluster_node() -> Iterator[redis.Redis]:
    """A one-node Redis Cluster owning every slot: it refuses any command whose keys span
    slots (CROSSSLOT), exactly as a real multi-node cluster would."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (the CRC16 tests above still ran)")
    # The cluster bus needs a port of its own (by default port + 10000, which may not exist).
    port, bus_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="keys-cluster-") as workdir:
        log_file = Path(workdir) / "redis.log"
        cluster = ("--cluster-enabled", "yes", "--cluster-port", str(bus_port))
        cluster += ("--cluster-config-file", str(Path(workdir) / "nodes.conf"), "--logfile", str(log_file))
        proc = subprocess.Popen(
            redis_server_argv(binary, port=port, data_dir=workdir, extra=cluster),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
                    break
                except redis.ConnectionError:
                    if proc.poll() is not None:
                        log = log_file.read_text(errors="replace") if log_file.exists() else ""
                        raise RuntimeError(f"redis-server (cluster mode) exited:\n{log[-2000:]}") from None
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            while "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the one-node cluster never reported cluster_state:ok")
                time.sleep(0.05)
            yield client
        finally:
            client.close()
            proc.terminate()
            proc.wait(timeout=10)


@pytest.mark.process
def test_a_cluster_node_runs_every_multi_key_command_of_a_fight(cluster_node: redis.Redis) -> None:
    r = cluster_node
    calls = _calls(9)
    seeded = authority.run(r, calls["seed"])
    assert seeded.code == "ok"
    assert authority.run(r, calls["ingest"]).code == "ok"
    assert authority.run(r, calls["heartbeat"]).code == "ok"
    fenced = authority.run(r, calls["fence"])
    assert (fenced.code, fenced.policy, fenced.amount) == ("fenced", "fair", 40)
    ticked = authority.run(r, calls["tick"])
    assert (ticked.code, ticked.applied) == ("applied", 140)
    assert authority.run(r, calls["transition"]).code == "ok"
    assert authority.run(r, calls["rate"]) == [0, 0]  # one slot: the players' keys are on the boss's tag
    # the recovered twin the fence wrote was drained by the tick, under the name core/keys.py gives
    last = r.xrevrange(keys.BossKeys(9).log, count=2)[-1][1]
    recovered = keys.recovered_field(keys.session_id("eu-2", 1))
    assert json.loads(last["d"]) == {keys.session_id("eu-1", 1): 100, recovered: 40}
    # a restore from the archive rewrites every key of the boss (and its dirty mark) at once
    snap = {"state": {"version": "7", "hp": "3", "gen": "1"}, "seq": {"eu-1:1": "1"}, "settled": {}}
    snap |= {"floor": {}, "contrib": {}, "players": {}, "buf": {recovered: "5"}, "first": []}
    restore = authority.restore_call(boss_id=9, incarnation="", gen=1, snapshot=json.dumps(snap))
    assert authority.run(r, restore).code == "restored"
    assert r.sismember(keys.BossKeys(9).dirty, "9") and r.hget(keys.BossKeys(9).buf, recovered) == "5"

    # a transactional read of several hashes (selectors, victory saga) and a reset's DEL
    pipe = r.pipeline(transaction=True)
    for key in keys.BossKeys(9).all():
        pipe.type(key)
    pipe.execute()
    assert r.delete(*keys.BossKeys(9).all()) > 0
    # the crash scan's MGET and a benchmark run's WATCH/MULTI and DEL
    r.set(keys.CRASH_SCAN_SINCE, 1)
    assert r.mget(keys.CRASH_SCAN_LAST, keys.CRASH_SCAN_SINCE) == [None, "1"]
    hp, ver = keys.bench_key("t1", "hp"), keys.bench_key("t1", "ver")
    r.set(hp, 10)
    with r.pipeline(transaction=True) as pipe:
        pipe.watch(hp)
        pipe.multi()
        pipe.set(hp, 9)
        pipe.incr(ver)
        pipe.execute()
    assert r.delete(hp, ver) == 2

    # and the node does refuse keys of two slots, so the above proves something
    with pytest.raises(redis.ResponseError, match="same slot"):  # CROSSSLOT
        r.mget(keys.BossKeys(9).state, keys.BossKeys(10).state)
