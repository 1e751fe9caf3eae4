"""Every Redis key and channel name of the platform, in one place.

``tests/core/test_keys.py`` scans the tree and fails on a key or channel string built
anywhere else (Python, Lua, JS, templates, tools and tests alike); the Lua scripts get their
key names as KEYS and the field names they write as ARGV from ``core/authority.py``.

Layout (all keys of one boss share the hash tag ``{boss:<id>}``, so every script of a boss
runs on one Redis Cluster node and different bosses spread across nodes):

    {boss:<id>}:state     HASH   the authority: hp, max_hp, version, status, phase,
                                 phase_name, phases (JSON), accepted, applied, overkill,
                                 recovered, discarded, last_tick_ms, fight, slug
    {boss:<id>}:buf       HASH   session -> damage accepted but not yet ticked
                                 (session = "<shard>:<epoch>", :func:`session_id`;
                                 :func:`recovered_field` of a session holds what a fair
                                 crash saga recovered for it)
    {boss:<id>}:seq       HASH   session -> last accepted seq (dedupe, Kafka-style: seq must
                                 be last+1; <= last is a duplicate; > last+1 is a gap)
    {boss:<id>}:settled   HASH   session -> "<policy>:<amount>": the session was fenced
                                 (crashed); amount is what its saga applied or discarded
    {boss:<id>}:floor     HASH   shard -> lowest epoch still accepted (retired shards)
    {boss:<id>}:hb        HASH   session -> last sign of life, ms (Redis TIME)
    {boss:<id>}:held      HASH   session -> last known unacked damage (heartbeats)
    {boss:<id>}:hbase     HASH   session -> first seq that may carry the held damage
    {boss:<id>}:contrib   HASH   shard -> accepted damage (contribution)
    {boss:<id>}:players   HASH   player -> accepted damage (per-player breakdown, rewards)
    {boss:<id>}:log       STREAM one entry per version change; entry id "<version>-1"

Global keys (read by the tick loop, the crash scan and dashboards; never passed to a
multi-key script; keys read together share a hash tag):

    liveops:bosses:live             SET     ids of bosses the sync tick visits (live or paused)
    liveops:ticks                   LIST    recent tick start times, ms (newest first, capped)
    liveops:shards:epoch            HASH    shard key -> last epoch handed out
    liveops:{crashscan}:last_ms     STRING  when the crash scan last completed (Redis TIME, ms)
    liveops:{crashscan}:since_ms    STRING  since when the crash scan has watched without a gap
                                            (read with last_ms in one MGET: same slot)
    boss:<id>:state                 pub/sub channel: one JSON state message per changed tick
    bench:{<run>}:<name>            scratch keys of one benchmark run (tools/bench), deleted
                                    when the run ends
"""

from __future__ import annotations

from dataclasses import dataclass

# --- global keys ----------------------------------------------------------------------------

GLOBAL_PREFIX = "liveops:"
LIVE_BOSSES = f"{GLOBAL_PREFIX}bosses:live"
TICK_TIMES = f"{GLOBAL_PREFIX}ticks"
TICK_TIMES_KEEP = 2_000
SHARD_EPOCHS = f"{GLOBAL_PREFIX}shards:epoch"
# The crash scan reads both of its keys with one MGET, which Redis Cluster only allows on
# keys of one slot: the shared hash tag puts them there.
CRASH_SCAN_TAG = "{crashscan}"
CRASH_SCAN_LAST = f"{GLOBAL_PREFIX}{CRASH_SCAN_TAG}:last_ms"
CRASH_SCAN_SINCE = f"{GLOBAL_PREFIX}{CRASH_SCAN_TAG}:since_ms"
GLOBAL_KEYS = (LIVE_BOSSES, TICK_TIMES, SHARD_EPOCHS, CRASH_SCAN_LAST, CRASH_SCAN_SINCE)

# --- one boss -------------------------------------------------------------------------------

BOSS_TAG_PREFIX = "{boss:"
BOSS_KEY_NAMES = (
    "state",
    "buf",
    "seq",
    "settled",
    "floor",
    "hb",
    "held",
    "hbase",
    "contrib",
    "players",
    "log",
)


@dataclass(frozen=True)
class BossKeys:
    """The key names of one boss (all on the hash tag ``{boss:<id>}``)."""

    boss_id: int

    @property
    def tag(self) -> str:
        """The boss's hash tag, ``{boss:<id>}``: the part of every key Redis Cluster hashes."""
        return f"{BOSS_TAG_PREFIX}{self.boss_id}}}"

    def _k(self, name: str) -> str:
        return f"{self.tag}:{name}"

    @property
    def state(self) -> str:
        """The authority hash (hp, version, status, phase, ledger counters, ...)."""
        return self._k("state")

    @property
    def buf(self) -> str:
        """Session -> damage accepted but not yet applied by a tick."""
        return self._k("buf")

    @property
    def seq(self) -> str:
        """Session -> last accepted seq."""
        return self._k("seq")

    @property
    def settled(self) -> str:
        """Session -> ``"<policy>:<amount>"`` of its crash settlement."""
        return self._k("settled")

    @property
    def floor(self) -> str:
        """Shard -> lowest epoch still accepted."""
        return self._k("floor")

    @property
    def hb(self) -> str:
        """Session -> last sign of life (ms, Redis TIME)."""
        return self._k("hb")

    @property
    def held(self) -> str:
        """Session -> damage it last reported holding unacknowledged."""
        return self._k("held")

    @property
    def hbase(self) -> str:
        """Session -> first seq that may carry the held damage."""
        return self._k("hbase")

    @property
    def contrib(self) -> str:
        """Shard -> accepted damage."""
        return self._k("contrib")

    @property
    def players(self) -> str:
        """Player -> accepted damage."""
        return self._k("players")

    @property
    def log(self) -> str:
        """The event log stream (entry id ``<version>-1``)."""
        return self._k("log")

    def all(self) -> list[str]:
        """Every key of the boss (for reset), in :data:`BOSS_KEY_NAMES` order."""
        return [self._k(name) for name in BOSS_KEY_NAMES]


# --- hash fields that name a shard session ------------------------------------------------

SESSION_SEPARATOR = ":"
# Suffix of the buffer field that holds what a fair crash saga recovered for a session:
# fence.lua writes it (the name comes in as ARGV), the tick drains it like any other field
# and lists it in the log entry's JSON, so it must stay free of quotes and backslashes.
RECOVERED_SUFFIX = "#recovered"


def session_id(shard_key: str, epoch: int) -> str:
    """The buffer/dedupe field of one shard connection: ``"<shard>:<epoch>"``."""
    return f"{shard_key}{SESSION_SEPARATOR}{epoch}"


def recovered_field(session: str) -> str:
    """The buffer field holding what a fair crash saga recovered for ``session``."""
    return f"{session}{RECOVERED_SUFFIX}"


@dataclass(frozen=True)
class SessionField:
    """A parsed session field: which shard connection, and whether it is the recovered twin."""

    shard_key: str
    epoch: int
    recovered: bool = False

    @property
    def session(self) -> str:
        """The plain session id (without the recovered suffix)."""
        return session_id(self.shard_key, self.epoch)


def parse_session(field: str) -> SessionField | None:
    """Read a field written by :func:`session_id` or :func:`recovered_field` (None if junk)."""
    base, suffix, rest = field.partition(RECOVERED_SUFFIX)
    if rest:
        return None
    shard_key, sep, epoch = base.rpartition(SESSION_SEPARATOR)
    if not sep or not shard_key or not (epoch.isascii() and epoch.isdigit()):
        return None
    return SessionField(shard_key, int(epoch), bool(suffix))


# --- pub/sub ----------------------------------------------------------------------------------

STATE_CHANNEL_PREFIX = "boss:"
STATE_CHANNEL_SUFFIX = ":state"
_CHANNEL_HEAD = STATE_CHANNEL_PREFIX.encode()
_CHANNEL_TAIL = STATE_CHANNEL_SUFFIX.encode()
_MAX_ID_DIGITS = 20  # a 64-bit id; longer is junk, not a boss


def state_channel(boss_id: int) -> str:
    """Pub/sub channel carrying a boss's serialized state messages."""
    return f"{STATE_CHANNEL_PREFIX}{boss_id}{STATE_CHANNEL_SUFFIX}"


def state_channel_boss_id(channel: bytes | str) -> int | None:
    """The boss id of a :func:`state_channel` name (raw bytes from Redis), else ``None``.

    Only the exact form :func:`state_channel` writes is accepted (no sign, no leading zero,
    no other suffix), so every boss has one channel name and junk never maps to a boss.
    """
    raw = channel.encode() if isinstance(channel, str) else channel
    if not (raw.startswith(_CHANNEL_HEAD) and raw.endswith(_CHANNEL_TAIL)):
        return None
    digits = raw[len(_CHANNEL_HEAD) : len(raw) - len(_CHANNEL_TAIL)]
    if not digits.isdigit() or len(digits) > _MAX_ID_DIGITS or (digits[:1] == b"0" and len(digits) > 1):
        return None
    return int(digits)


# --- benchmark scratch keys -------------------------------------------------------------------

BENCH_PREFIX = "bench:"


def bench_key(run: str, name: str) -> str:
    """A scratch key of one benchmark run: ``bench:{<run>}:<name>``.

    Every key of a run shares the hash tag ``{<run>}``, so a run's WATCH/MULTI and multi-key
    DEL stay on one slot.
    """
    return f"{BENCH_PREFIX}{{{run}}}:{name}"
