"""Every Redis key and channel name of the platform, in one place (tests/core/test_keys.py
fails when a key string appears anywhere else).

Layout (all keys of one boss share the hash tag ``{boss:<id>}``, so every script of a boss
runs on one Redis Cluster node and different bosses spread across nodes):

    {boss:<id>}:state     HASH   the authority: hp, max_hp, version, status, phase,
                                 phase_name, phases (JSON), accepted, applied, overkill,
                                 recovered, discarded, last_tick_ms, fight, slug
    {boss:<id>}:buf       HASH   session -> damage accepted but not yet ticked
                                 (session = "<shard>:<epoch>"; "<session>#recovered" holds
                                 what a fair crash saga recovered for that session)
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

Global keys (read by the tick loop and dashboards; never touched by a multi-key script):

    liveops:bosses:live   SET    ids of bosses the sync tick visits (live or paused)
    liveops:ticks         LIST   recent tick start times, ms (newest first, capped)
    liveops:shards:epoch  HASH   shard key -> last epoch handed out
    liveops:crashscan:last_ms    STRING  when the crash scan last completed (Redis TIME, ms)
    liveops:crashscan:since_ms   STRING  since when the crash scan has watched without a gap
    boss:<id>:state       pub/sub channel: one JSON state message per changed tick
"""

from __future__ import annotations

from dataclasses import dataclass

LIVE_BOSSES = "liveops:bosses:live"
TICK_TIMES = "liveops:ticks"
TICK_TIMES_KEEP = 2_000
SHARD_EPOCHS = "liveops:shards:epoch"
CRASH_SCAN_LAST = "liveops:crashscan:last_ms"
CRASH_SCAN_SINCE = "liveops:crashscan:since_ms"
# Suffix of the buffer field that holds what a fair crash saga recovered for a session
# (fence.lua writes it; the tick drains it like any other field).
RECOVERED_SUFFIX = "#recovered"
STATE_CHANNEL_PREFIX = "boss:"


def session_id(shard_key: str, epoch: int) -> str:
    """The buffer/dedupe field of one shard connection: ``"<shard>:<epoch>"``."""
    return f"{shard_key}:{epoch}"


def state_channel(boss_id: int) -> str:
    """Pub/sub channel carrying a boss's serialized state messages."""
    return f"{STATE_CHANNEL_PREFIX}{boss_id}:state"


def state_channel_boss_id(channel: bytes) -> int | None:
    """The boss id of a :func:`state_channel` name (raw bytes from Redis), else ``None``."""
    prefix = STATE_CHANNEL_PREFIX.encode()
    if not channel.startswith(prefix):
        return None
    head = channel[len(prefix) :].split(b":", 1)[0]
    return int(head) if head.isdigit() and len(head) <= 20 else None


@dataclass(frozen=True)
class BossKeys:
    """The key names of one boss (all on the hash tag ``{boss:<id>}``)."""

    boss_id: int

    @property
    def tag(self) -> str:
        return f"{{boss:{self.boss_id}}}"

    def _k(self, name: str) -> str:
        return f"{self.tag}:{name}"

    @property
    def state(self) -> str:
        return self._k("state")

    @property
    def buf(self) -> str:
        return self._k("buf")

    @property
    def seq(self) -> str:
        return self._k("seq")

    @property
    def settled(self) -> str:
        return self._k("settled")

    @property
    def floor(self) -> str:
        return self._k("floor")

    @property
    def hb(self) -> str:
        return self._k("hb")

    @property
    def held(self) -> str:
        return self._k("held")

    @property
    def hbase(self) -> str:
        return self._k("hbase")

    @property
    def contrib(self) -> str:
        return self._k("contrib")

    @property
    def players(self) -> str:
        return self._k("players")

    @property
    def log(self) -> str:
        return self._k("log")

    def all(self) -> list[str]:
        """Every key of the boss (for reset)."""
        return [
            self.state,
            self.buf,
            self.seq,
            self.settled,
            self.floor,
            self.hb,
            self.held,
            self.hbase,
            self.contrib,
            self.players,
            self.log,
        ]
