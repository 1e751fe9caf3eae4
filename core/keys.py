"""Every Redis key and channel name of the platform, in one place.

``tests/core/test_keys.py`` scans the tree and fails on a key or channel string built
anywhere else (Python, Lua, JS, templates, tools and tests alike); the Lua scripts get their
key names as KEYS and the field names they write as ARGV from ``core/authority.py``.

Layout. Bosses are grouped in ``TICK_BUCKETS`` buckets (``bucket = id % TICK_BUCKETS``), and
every key of a boss carries its bucket's hash tag ``{bosses:<bucket>}``: every script of a
boss runs on one Redis Cluster slot, the buckets spread bosses across nodes, and one *dirty*
set per bucket, on the same slot, lets the scripts that fill a boss's buffer mark it for the
next tick atomically (docs/sync-tick.md). ``<b>`` is the bucket, ``<id>`` the boss:

    {bosses:<b>}:dirty         SET    ids of this bucket's bosses the tick must visit: added
                                      by ingest.lua and a fair fence.lua with the damage,
                                      removed by tick.lua once the buffer is drained (or by
                                      the tick's follow-up once a defeated, ended or reset
                                      boss is settled)
    {bosses:<b>}:unarchived    SET    ids of this bucket's bosses whose event log may hold
                                      entries the SQL archive lacks: added by every script
                                      that appends to a log (seed, tick, transition,
                                      restore), taken by the archive pass before it copies
                                      (so a change during the copy marks the boss again)
    {bosses:<b>}:watch         STRING written by the restore check once it has checked
                                      every fight of the bucket; missing (a Redis that
                                      restarted empty, a flush, a failover to an empty
                                      node) makes the next pass check the bucket's every
                                      fight against the archive (docs/durability.md)
    {bosses:<b>}:<id>:state    HASH   the authority: hp, max_hp, version, status, phase,
                                      phase_name, phases (JSON), accepted, applied, overkill,
                                      recovered, discarded, last_tick_ms, fight, slug,
                                      incarnation
    {bosses:<b>}:<id>:buf      HASH   session -> damage accepted but not yet ticked
                                      (session = "<shard>:<epoch>", :func:`session_id`;
                                      :func:`recovered_field` of a session holds what a fair
                                      crash saga recovered for it)
    {bosses:<b>}:<id>:seq      HASH   session -> last accepted seq (dedupe, Kafka-style: seq
                                      must be last+1; <= last is a duplicate; > last+1 a gap)
    {bosses:<b>}:<id>:settled  HASH   session -> "<policy>:<amount>": the session was fenced
                                      (crashed); amount is what its saga applied or discarded
    {bosses:<b>}:<id>:floor    HASH   shard -> lowest epoch still accepted (retired shards)
    {bosses:<b>}:<id>:hb       HASH   session -> last sign of life, ms (Redis TIME)
    {bosses:<b>}:<id>:held     HASH   session -> last known unacked damage (heartbeats)
    {bosses:<b>}:<id>:hbase    HASH   session -> first seq that may carry the held damage
    {bosses:<b>}:<id>:heldby   HASH   session -> per-player part of its held damage, JSON
                                      ``["<player>",<damage>,...]`` (sum <= held; heartbeat.lua
                                      writes it with held, ingest.lua subtracts accepted
                                      deltas' breakdowns, a fair fence.lua credits it to pbuf
                                      and leaves what it credited here; docs/faults.md)
    {bosses:<b>}:<id>:contrib  HASH   shard -> accepted damage (contribution)
    {bosses:<b>}:<id>:pbuf     HASH   player -> accepted damage not yet ticked (the tick moves
                                      it to players and logs it)
    {bosses:<b>}:<id>:players  HASH   player -> ticked damage (per-player breakdown, rewards)
    {bosses:<b>}:<id>:archived HASH   session -> highest seq in the SQL archive (written by
                                      the archive; heartbeats report it as durable_seq)
    {bosses:<b>}:<id>:log      STREAM one entry per version change; entry id "<version>-1"
    {bosses:<b>}:<id>:durable  STRING a counter bumped before a replica wait whose reply wrote
                                      nothing (a duplicate's ack, a fence): WAIT covers only
                                      the writes of its own connection (core/durability.py)
    {bosses:<b>}:<id>:roster   SET    player ids hosted attacks were accepted from (rate.lua):
                                      a new id past MAX_PLAYERS_PER_BOSS is refused
    {bosses:<b>}:<id>:rate:<player>  STRING  the hosted shard's rate limit of one player on
                                      this boss, across every ASGI process (rate.lua, GCRA:
                                      the theoretical arrival time, us); expires with it, so
                                      an idle player costs nothing. Not in BOSS_KEY_NAMES (one
                                      per player, never listed; a reset leaves them to expire)

Global keys (read by the tick loop, the crash scan and dashboards; never passed to a
multi-key script; keys read together share a hash tag):

    liveops:bosses:live             SET     ids of bosses the sync tick visits (live or paused)
    liveops:ticks                   LIST    recent tick start times, ms (newest first, capped)
    liveops:shards:epoch            HASH    shard key -> last epoch handed out
    liveops:shards:auth             HASH    shard key -> kind and token hash of a game server's
                                            shard (JSON), copied at each database-checked
                                            auth: lets a session resume while the database
                                            is down (docs/faults.md)
    liveops:archive:problems        HASH    boss id -> why the archive of that boss stopped (an
                                            event-log entry it cannot read); the ops overview
                                            shows it, the next clean archive of the boss clears it
    liveops:webhooks:parked         LIST    fight events (JSON) raised while the database was
                                            unreachable, oldest first: the webhook sweep
                                            creates their deliveries once it is back
    liveops:{crashscan}:last_ms     STRING  when the crash scan last completed (Redis TIME, ms)
    liveops:{crashscan}:since_ms    STRING  since when the crash scan has watched without a gap
                                            (read with last_ms in one MGET: same slot)
    liveops:restore:cursor          STRING  the last boss id the restore check's rolling sweep
                                            checked (it wraps to the start past the last)
    liveops:archive:lock            STRING  held (SET NX PX) by the archive pass that runs:
                                            a second pass scheduled meanwhile returns at once
    liveops:tick:<p>:claim          STRING  held (SET NX PX, half a tick interval) by the pass
                                            of tick partition <p> that started last: a stale
                                            tick task of a backlog returns at once
    liveops:victory:pending         SET     ids of defeated bosses whose victory saga was
                                            enqueued and has not finished (the resume sweep
                                            reads these, not every boss)
    boss:<id>:state                 pub/sub channel: one JSON state message per changed tick
                                    (PUBLISH/SUBSCRIBE on one Redis or behind Sentinel)
    {bosses:<b>}:<id>:state         the same channel on a Redis Cluster, sharded pub/sub
                                    (SPUBLISH/SSUBSCRIBE on the node of the boss's slot; a
                                    channel name, not the key of the same spelling)
    bench:{<run>}:<name>            scratch keys of one benchmark run (tools/bench), deleted
                                    when the run ends
    liveops:login:fail:<digest>     STRING  failed admin logins of one username from one
                                            address (digest: SHA-256 of both), expiring with
                                            the throttle's window (audit/login_throttle.py)
    liveops:login:fail:addr:<digest>  STRING  failed admin logins from one address, any username
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property, lru_cache

# --- global keys ----------------------------------------------------------------------------

GLOBAL_PREFIX = "liveops:"
LIVE_BOSSES = f"{GLOBAL_PREFIX}bosses:live"
TICK_TIMES = f"{GLOBAL_PREFIX}ticks"
TICK_TIMES_KEEP = 2_000
SHARD_EPOCHS = f"{GLOBAL_PREFIX}shards:epoch"
SHARD_AUTH = f"{GLOBAL_PREFIX}shards:auth"
WEBHOOK_EVENTS_PARKED = f"{GLOBAL_PREFIX}webhooks:parked"
# The crash scan reads both of its keys with one MGET, which Redis Cluster only allows on
# keys of one slot: the shared hash tag puts them there.
CRASH_SCAN_TAG = "{crashscan}"
CRASH_SCAN_LAST = f"{GLOBAL_PREFIX}{CRASH_SCAN_TAG}:last_ms"
CRASH_SCAN_SINCE = f"{GLOBAL_PREFIX}{CRASH_SCAN_TAG}:since_ms"
ARCHIVE_PROBLEMS = f"{GLOBAL_PREFIX}archive:problems"
RESTORE_CURSOR = f"{GLOBAL_PREFIX}restore:cursor"
ARCHIVE_LOCK = f"{GLOBAL_PREFIX}archive:lock"
VICTORY_PENDING = f"{GLOBAL_PREFIX}victory:pending"
TICK_CLAIM_PREFIX = f"{GLOBAL_PREFIX}tick:"


def tick_claim_key(partition: int) -> str:
    """The claim of the newest pass of one tick partition (a stale task of a backlog skips)."""
    return f"{TICK_CLAIM_PREFIX}{partition}:claim"


GLOBAL_KEYS = (
    LIVE_BOSSES,
    TICK_TIMES,
    SHARD_EPOCHS,
    SHARD_AUTH,
    CRASH_SCAN_LAST,
    CRASH_SCAN_SINCE,
    ARCHIVE_PROBLEMS,
    RESTORE_CURSOR,
    ARCHIVE_LOCK,
    VICTORY_PENDING,
)

# --- one boss -------------------------------------------------------------------------------

# Buckets of bosses: the unit of hash-slot placement and of tick partitioning. Changing it
# moves every boss's keys: only with no fight running (docs/sync-tick.md).
TICK_BUCKETS = 256
BOSS_TAG_PREFIX = "{bosses:"
DIRTY_NAME = "dirty"
UNARCHIVED_NAME = "unarchived"
WATCH_NAME = "watch"


def tick_bucket(boss_id: int) -> int:
    """The bucket of a boss: its keys' hash tag and its tick partition."""
    return boss_id % TICK_BUCKETS


def bucket_tag(bucket: int) -> str:
    """The hash tag of a bucket, ``{bosses:<bucket>}``."""
    return f"{BOSS_TAG_PREFIX}{bucket}}}"


def dirty_key(bucket: int) -> str:
    """The set of a bucket's boss ids that have something for the tick to do."""
    return f"{bucket_tag(bucket)}:{DIRTY_NAME}"


def unarchived_key(bucket: int) -> str:
    """The set of a bucket's boss ids whose log may hold entries the archive has not copied."""
    return f"{bucket_tag(bucket)}:{UNARCHIVED_NAME}"


def watch_key(bucket: int) -> str:
    """The restore check's mark that it has checked every fight of the bucket."""
    return f"{bucket_tag(bucket)}:{WATCH_NAME}"


# Prefix of the per-player rate-limit keys (:meth:`BossKeys.rate`); not one of the
# BOSS_KEY_NAMES, which are one key each per boss.
RATE_NAME = "rate"
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
    "pbuf",
    "players",
    "archived",
    "log",
    "durable",
    "heldby",
    "roster",
)


@dataclass(frozen=True)
class BossKeys:
    """The key names of one boss (all on its bucket's hash tag ``{bosses:<bucket>}``)."""

    boss_id: int

    @cached_property
    def tag(self) -> str:
        """The boss's hash tag, its bucket's: the part of every key Redis Cluster hashes."""
        return bucket_tag(tick_bucket(self.boss_id))

    def _k(self, name: str) -> str:
        return f"{self.tag}:{self.boss_id}:{name}"

    @cached_property
    def dirty(self) -> str:
        """The dirty set of the boss's bucket (shared with the bucket's other bosses)."""
        return dirty_key(tick_bucket(self.boss_id))

    @cached_property
    def unarchived(self) -> str:
        """The unarchived set of the boss's bucket (shared with the bucket's other bosses)."""
        return unarchived_key(tick_bucket(self.boss_id))

    @cached_property
    def state(self) -> str:
        """The authority hash (hp, version, status, phase, ledger counters, ...)."""
        return self._k("state")

    @cached_property
    def buf(self) -> str:
        """Session -> damage accepted but not yet applied by a tick."""
        return self._k("buf")

    @cached_property
    def seq(self) -> str:
        """Session -> last accepted seq."""
        return self._k("seq")

    @cached_property
    def settled(self) -> str:
        """Session -> ``"<policy>:<amount>"`` of its crash settlement."""
        return self._k("settled")

    @cached_property
    def floor(self) -> str:
        """Shard -> lowest epoch still accepted."""
        return self._k("floor")

    @cached_property
    def hb(self) -> str:
        """Session -> last sign of life (ms, Redis TIME)."""
        return self._k("hb")

    @cached_property
    def held(self) -> str:
        """Session -> damage it last reported holding unacknowledged."""
        return self._k("held")

    @cached_property
    def hbase(self) -> str:
        """Session -> first seq that may carry the held damage."""
        return self._k("hbase")

    @cached_property
    def contrib(self) -> str:
        """Shard -> accepted damage."""
        return self._k("contrib")

    @cached_property
    def pbuf(self) -> str:
        """Player -> accepted damage the next tick moves to :attr:`players`."""
        return self._k("pbuf")

    @cached_property
    def players(self) -> str:
        """Player -> ticked damage."""
        return self._k("players")

    @cached_property
    def archived(self) -> str:
        """Session -> highest seq the SQL archive holds."""
        return self._k("archived")

    @cached_property
    def log(self) -> str:
        """The event log stream (entry id ``<version>-1``)."""
        return self._k("log")

    @cached_property
    def durable(self) -> str:
        """A counter written only so that a replica wait covers earlier writes (docs/durability.md)."""
        return self._k("durable")

    @cached_property
    def roster(self) -> str:
        """Every player id hosted attacks were accepted from (rate.lua, MAX_PLAYERS_PER_BOSS)."""
        return self._k("roster")

    def rate(self, player: str) -> str:
        """The cross-process rate-limit state of one hosted player on this boss (rate.lua)."""
        return f"{self._k(RATE_NAME)}:{player}"

    def all(self) -> list[str]:
        """Every key of the boss alone (for reset), in :data:`BOSS_KEY_NAMES` order (not the
        bucket's shared dirty set: the tick removes a reset boss from it)."""
        return [self._k(name) for name in BOSS_KEY_NAMES]

    @cached_property
    def heldby(self) -> str:
        """Session -> per-player part of its held damage (JSON ``[player, damage, ...]``)."""
        return self._k("heldby")


@lru_cache(maxsize=65_536)
def boss_keys(boss_id: int) -> BossKeys:
    """The :class:`BossKeys` of a boss, built once per process: the tick pass names seven keys
    of every dirty boss every 100 ms, and building the strings each time was a fifth of it."""
    return BossKeys(boss_id)


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


def sharded_state_channel(boss_id: int) -> str:
    """The boss's state channel for sharded pub/sub on a cluster: ``{bosses:<b>}:<id>:state``.

    It carries the bucket's hash tag, so SPUBLISH and SSUBSCRIBE go to the master that owns
    the boss's keys: the tick publishes on the node it just ran the script on, and a
    failover or a slot move takes the channel along with the keys (docs/topologies.md).
    """
    return f"{bucket_tag(tick_bucket(boss_id))}:{boss_id}{STATE_CHANNEL_SUFFIX}"


def sharded_state_channel_boss_id(channel: bytes | str) -> int | None:
    """The boss id of a :func:`sharded_state_channel` name, else ``None``.

    As strict as :func:`state_channel_boss_id`: the id must be canonical digits and the tag
    must be the id's own bucket, so each boss has exactly one sharded channel name.
    """
    raw = channel.encode() if isinstance(channel, str) else channel
    tag_head = BOSS_TAG_PREFIX.encode()
    if not (raw.startswith(tag_head) and raw.endswith(_CHANNEL_TAIL)):
        return None
    bucket, sep, digits = raw[len(tag_head) : len(raw) - len(_CHANNEL_TAIL)].partition(b"}:")
    if (
        not sep
        or not digits.isdigit()
        or len(digits) > _MAX_ID_DIGITS
        or (digits[:1] == b"0" and len(digits) > 1)
    ):
        return None
    boss_id = int(digits)
    if bucket != str(tick_bucket(boss_id)).encode():
        return None
    return boss_id


# --- benchmark scratch keys -------------------------------------------------------------------

BENCH_PREFIX = "bench:"


def bench_key(run: str, name: str) -> str:
    """A scratch key of one benchmark run: ``bench:{<run>}:<name>``.

    Every key of a run shares the hash tag ``{<run>}``, so a run's WATCH/MULTI and multi-key
    DEL stay on one slot.
    """
    return f"{BENCH_PREFIX}{{{run}}}:{name}"


# --- admin login throttle (audit/login_throttle.py) -------------------------------------------

LOGIN_FAILURES_PREFIX = f"{GLOBAL_PREFIX}login:fail:"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8", "replace")).hexdigest()[:32]


def login_failures_key(*, username: str, address: str) -> str:
    """The failed-login counter of ``username`` (case-folded) from ``address``: hashed, so a
    key's length and characters do not depend on what a client typed."""
    return f"{LOGIN_FAILURES_PREFIX}{_digest(username.casefold(), address)}"


def login_address_failures_key(*, address: str) -> str:
    """The failed-login counter of ``address``, whatever the username."""
    return f"{LOGIN_FAILURES_PREFIX}addr:{_digest(address)}"
