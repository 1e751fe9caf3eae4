"""The kit's scenarios: each drives one SDK through its driver, with faults from the proxy, and
ends with the authority's books (conformance/README.md lists what each one holds the SDK to).

A scenario is a function of a :class:`conformance.runner.Context`; it returns a short detail
for the report line and raises AssertionError (or DriverError) when the SDK fails it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import redis
from django.conf import settings
from websockets.sync.client import connect

from bosses.models import SagaKind, SagaRun, SagaStatus
from bosses.services import boss_pause, boss_resume
from core import keys
from core.redis import get_redis
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from conformance.runner import Context

VECTORS = Path(__file__).resolve().parent / "vectors"
PLAYERS = [f"p{i}" for i in range(8)]


def _fight(ctx: Context, boss: str, rounds: int, *, amount: int = 7) -> None:
    """``rounds`` hits per player, in one driver command per player."""
    for player in PLAYERS:
        reply = ctx.driver.call("hit", boss=boss, player=player, amount=amount, count=rounds)
        assert reply["hits"] == rounds, reply


def _flushed(ctx: Context) -> dict:
    reply = ctx.driver.call("flush", timeout_ms=20_000)
    assert reply["flushed"], f"the SDK did not get everything acknowledged: {ctx.driver.call('stats')}"
    return ctx.driver.call("stats")


def _held_reported(ctx: Context, boss_id: int, epoch: int, amount: int) -> None:
    """Wait until the authority's record of what the session holds (its last heartbeat) is ``amount``."""
    session = f"{ctx.shard}:{epoch}"
    wait_until(
        lambda: int(get_redis().hget(keys.BossKeys(boss_id).held, session) or 0) == amount,
        what=f"a heartbeat reporting {amount} held",
    )


def _saga(boss_id: int, shard: str, epoch: int) -> SagaRun:
    return wait_until(
        lambda: SagaRun.objects.filter(
            boss_id=boss_id, kind=SagaKind.CRASH, shard_key=shard, epoch=epoch, status=SagaStatus.COMPLETED
        ).first(),
        what=f"the crash saga of {shard}:{epoch}",
        timeout_s=20,
    )


def exactly_once(ctx: Context) -> str:
    """Lost acks, duplicated damage frames, a cut connection and acks slower than a re-send:
    every point lands once."""
    boss = ctx.boss()
    ctx.connect()
    ctx.proxy.set(drop_server={"ack": 4}, duplicate_client={"damage": 4})
    _fight(ctx, boss.slug, 30)
    ctx.driver.call("wait_acked", amount=len(PLAYERS) * 30 * 7 // 2, timeout_ms=20_000)
    ctx.proxy.cut()
    _fight(ctx, boss.slug, 20)
    ctx.proxy.set(drop_server={"ack": 2})
    _fight(ctx, boss.slug, 5)
    _flushed(ctx)
    ctx.proxy.set(delay_server_s={"ack": 0.35})  # slower than a re-send: the same seq twice
    _fight(ctx, boss.slug, 5)
    stats = _flushed(ctx)
    ctx.proxy.set(delay_server_s={"ack": 0.0})
    assert ctx.proxy.seen.duplicated == 4 and ctx.proxy.seen.server_types["ack"] > 0
    assert stats["duplicates"] >= 1, stats  # a duplicated frame is acked duplicate: true
    return ctx.books(boss, stats["generated"][boss.slug], f"{stats['resent']} re-sends", each=60 * 7)


def resume(ctx: Context) -> str:
    """Three cuts mid-fight: the SDK resumes its epoch each time (no new session)."""
    boss = ctx.boss()
    epoch = ctx.connect()
    for n in range(3):
        _fight(ctx, boss.slug, 10)
        ctx.proxy.cut()

        def back(connects: int = n + 2) -> bool:
            stats = ctx.driver.call("stats")
            return bool(stats["connected"] and stats["connects"] >= connects)

        wait_until(back, what="a reconnect")
    stats = _flushed(ctx)
    assert stats["epoch"] == epoch, f"the SDK took a new epoch instead of resuming {epoch}: {stats}"
    assert stats["connects"] >= 4 and stats["fences"] == 0, stats
    return ctx.books(boss, stats["generated"][boss.slug], f"{stats['connects']} connects, epoch {epoch}")


def dead_link(ctx: Context) -> str:
    """The link goes silent mid-fight (no frame, no pong, TCP up): the SDK's keepalive must
    notice and reconnect, resuming its epoch, before the heartbeat timeout (5 s) fences it."""
    boss = ctx.boss(heartbeat_timeout_ms=5_000)
    epoch = ctx.connect(heartbeat_ms=200)
    _fight(ctx, boss.slug, 10)
    _flushed(ctx)
    held = ctx.proxy.hold()
    _fight(ctx, boss.slug, 10)
    wait_until(lambda: ctx.proxy.seen.connections >= 2, what="a new connection after the link went silent")
    stats = _flushed(ctx)
    assert held == 1 and stats["epoch"] == epoch and stats["fences"] == 0, (held, stats)
    assert not SagaRun.objects.filter(boss_id=boss.pk, kind=SagaKind.CRASH).exists(), "fenced as crashed"
    return ctx.books(boss, stats["generated"][boss.slug], f"reconnected, epoch {epoch} resumed")


def paused(ctx: Context) -> str:
    """A paused boss refuses deltas: the SDK keeps them and sends them once it is resumed."""
    boss = ctx.boss()
    ctx.connect()
    boss_pause(boss=boss)
    _fight(ctx, boss.slug, 10)
    wait_until(lambda: ctx.proxy.seen.error_codes["not_live"] >= 2, what="re-sends refused as not_live")
    assert ctx.hp(boss) == boss.max_hp
    boss_resume(boss=boss)
    stats = _flushed(ctx)
    return ctx.books(
        boss, stats["generated"][boss.slug], f"{ctx.proxy.seen.error_codes['not_live']} refusals"
    )


def authority_unavailable(ctx: Context) -> str:
    """The authority does not answer (``authority_unavailable``): the same seq again, later."""
    boss = ctx.boss()
    ctx.connect()
    ctx.proxy.set(unavailable_client={"damage": 5})
    _fight(ctx, boss.slug, 10)
    stats = _flushed(ctx)
    first = ctx.proxy.seen.damage_seqs[:6]
    assert len({seq for _, _, seq in first}) == 1, f"a new seq while the first was refused: {first}"
    assert stats["errors"].get("authority_unavailable") == 5, stats
    return ctx.books(boss, stats["generated"][boss.slug], "6 sends of seq 1")


def rate_limited(ctx: Context) -> str:
    """The socket cap's ``rate_limited`` and close 4429: the SDK backs off and gets in."""
    boss = ctx.boss()
    ctx.proxy.set(refuse_connections=3)
    ctx.connect()
    assert ctx.proxy.seen.refused == 3
    _fight(ctx, boss.slug, 50)
    stats = _flushed(ctx)
    assert stats["errors"].get("rate_limited") == 3, stats  # it read why it was refused
    frames, hits = len(ctx.proxy.seen.damage_seqs), len(PLAYERS) * 50
    assert frames * 10 <= hits, f"{frames} damage frames for {hits} hits: not one delta per tick"
    return ctx.books(boss, stats["generated"][boss.slug], f"{frames} damage frames for {hits} hits")


def _fence_setup(ctx: Context, policy: str) -> tuple:
    """A boss, some acknowledged damage, then 8 x 10 x 5 held under a pause and reported."""
    boss = ctx.boss(crash_policy=policy, heartbeat_timeout_ms=1_000)
    epoch = ctx.connect(heartbeat_ms=100)
    _fight(ctx, boss.slug, 10)
    _flushed(ctx)
    boss_pause(boss=boss)
    _fight(ctx, boss.slug, 10, amount=5)
    ctx.driver.call("heartbeat")  # report what it holds at the next tick
    _held_reported(ctx, boss.pk, epoch, len(PLAYERS) * 10 * 5)
    return boss, epoch


def fenced(ctx: Context) -> str:
    """Silent past the heartbeat timeout (a partition): fenced with ``settled``; the SDK drops
    exactly that and goes on under a new epoch. Fair: everything lands once."""
    boss, epoch = _fence_setup(ctx, "fair")
    ctx.proxy.set(partitioned=True)
    saga = _saga(boss.pk, ctx.shard, epoch)
    boss_resume(boss=boss)
    ctx.proxy.set(partitioned=False)
    assert ctx.driver.call("wait_connected", epoch_above=epoch, timeout_ms=20_000)["connected"]
    _fight(ctx, boss.slug, 5)
    stats = _flushed(ctx)
    assert stats["fences"] == 1 and stats["dropped"][boss.slug] == saga.amount > 0, (stats, saga.amount)
    detail = f"settled {saga.amount}, epoch {stats['epoch']}"
    return ctx.books(boss, stats["generated"][boss.slug], detail, each=10 * 7 + 10 * 5 + 5 * 7)


def stale_epoch(ctx: Context) -> str:
    """Cut off while the platform fences its epoch, the SDK resumes that stale epoch: its
    re-send is ``fenced``, it settles and takes a new one. Harsh: the settled part is gone."""
    boss, epoch = _fence_setup(ctx, "harsh")
    ctx.proxy.set(partitioned=True)
    ctx.proxy.cut()
    saga = _saga(boss.pk, ctx.shard, epoch)
    boss_resume(boss=boss)
    ctx.proxy.set(partitioned=False)
    assert ctx.driver.call("wait_connected", epoch_above=epoch, timeout_ms=20_000)["connected"]
    stats = _flushed(ctx)
    assert stats["fences"] == 1 and stats["dropped"][boss.slug] == saga.amount > 0, (stats, saga.amount)
    assert ctx.proxy.seen.error_codes["fenced"] >= 1
    return ctx.books(
        boss, stats["generated"][boss.slug] - saga.amount, f"discarded {saga.amount}", each=10 * 7
    )


def bye(ctx: Context) -> str:
    """A clean stop: flushed, ``bye_ack``, the session retired as ``left`` (not crashed)."""
    boss = ctx.boss()
    epoch = ctx.connect()
    _fight(ctx, boss.slug, 10)
    stats = ctx.driver.call("stats")
    reply = ctx.driver.call("bye", timeout_ms=20_000)
    assert reply["flushed"] and reply["left"] and reply["left"]["epoch"] == epoch, reply
    saga = _saga(boss.pk, ctx.shard, epoch)
    assert saga.detail.get("reason") == "left" and saga.amount == 0, (saga.detail, saga.amount)
    return ctx.books(boss, stats["generated"][boss.slug], "retired: left")


def _crash(ctx: Context, policy: str) -> str:
    boss, epoch = _fence_setup(ctx, policy)
    acked = len(PLAYERS) * 10 * 7
    ctx.driver.call("crash")
    assert ctx.driver.wait_exit() is not None, "the driver did not exit on crash"
    saga = _saga(boss.pk, ctx.shard, epoch)
    assert saga.detail.get("reason") == "crashed" and saga.amount == len(PLAYERS) * 50, saga.detail
    boss_resume(boss=boss)
    lands = acked + saga.amount if policy == "fair" else acked
    each = 10 * 7 + (10 * 5 if policy == "fair" else 0)  # a fair saga credits the reported players
    return ctx.books(boss, lands, f"{policy}: settled {saga.amount}", each=each)


def crash_fair(ctx: Context) -> str:
    """The game server dies holding damage: the fair saga applies what its heartbeat reported."""
    return _crash(ctx, "fair")


def crash_harsh(ctx: Context) -> str:
    """The game server dies holding damage: the harsh saga discards it."""
    return _crash(ctx, "harsh")


def stale_heartbeat(ctx: Context) -> str:
    """A heartbeat held back by the proxy until the deltas sent after it are accepted, then
    delivered; the driver dies. Its ``sent`` (the client's highest seq sent) tells the
    platform it is stale, so the stored report (nothing held) stands and the fair crash saga
    settles nothing: an SDK whose heartbeat lacks it has that damage applied twice."""
    boss = ctx.boss(crash_policy="fair", heartbeat_timeout_ms=1_000)
    epoch = ctx.connect(heartbeat_ms=100)
    boss_pause(boss=boss)
    _fight(ctx, boss.slug, 10)  # seq 1, refused while the boss is paused, stays in flight
    wait_until(lambda: ctx.proxy.seen.error_codes["not_live"] >= 1, what="seq 1 refused as not_live")
    _fight(ctx, boss.slug, 10, amount=5)  # pending behind it: it goes out under seq 2
    ctx.proxy.set(hold_client={"heartbeat": 1})
    ctx.driver.call("heartbeat")
    held = wait_until(lambda: ctx.proxy.seen.held, what="a heartbeat held back")[0]
    assert held.get("pending", 0) >= len(PLAYERS) * 10 * 5, f"the held heartbeat: {held}"
    boss_resume(boss=boss)
    stats = _flushed(ctx)
    _held_reported(ctx, boss.pk, epoch, 0)
    ctx.proxy.set(drop_client={"heartbeat": 10**6})  # from now on only the stale one arrives
    assert ctx.proxy.release() == 1
    wait_until(lambda: ctx.proxy.seen.released_answered == 1, what="the stale heartbeat answered")
    stored = int(get_redis().hget(keys.BossKeys(boss.pk).held, f"{ctx.shard}:{epoch}") or 0)
    ctx.driver.call("crash")
    assert ctx.driver.wait_exit() is not None, "the driver did not exit on crash"
    saga = _saga(boss.pk, ctx.shard, epoch)
    assert stored == 0 and saga.amount == 0, (
        f"a stale heartbeat ({held}) replaced the report: {stored} held, the saga settled {saga.amount}"
    )
    return ctx.books(
        boss,
        stats["generated"][boss.slug],
        f"stale heartbeat ignored (sent {held.get('sent')})",
        each=10 * 7 + 10 * 5,
    )


def _authority_keys(boss_id: int) -> tuple[redis.Redis, list[str]]:
    """A bytes client on the authority (DUMP/RESTORE need bytes) and the boss's own keys."""
    return redis.Redis.from_url(settings.REDIS_URL), keys.BossKeys(boss_id).all()


def _rollback_setup(ctx: Context, **connect: Any) -> tuple[Any, dict[str, bytes | None]]:
    """Round 1 acknowledged, applied and reported durable; a copy of the boss's keys; round 2
    acknowledged (kept by the SDK: not durable yet)."""
    boss = ctx.boss()
    ctx.connect(**connect)
    _fight(ctx, boss.slug, 10)
    _flushed(ctx)
    wait_until(lambda: not get_redis().hlen(keys.BossKeys(boss.pk).buf), what="round 1 applied")
    wait_until(lambda: ctx.driver.call("stats")["kept"] == 0, what="round 1 reported durable", timeout_s=20)
    client, names = _authority_keys(boss.pk)
    copy = {name: client.dump(name) for name in names}
    client.close()
    acked = ctx.driver.call("stats")["acked"]
    for _ in range(3):  # three deltas, each acknowledged before the next hits
        _fight(ctx, boss.slug, 2, amount=3)
        acked += len(PLAYERS) * 2 * 3
        assert ctx.driver.call("wait_acked", amount=acked, timeout_ms=20_000)["reached"]
    stats = ctx.driver.call("stats")
    assert stats["kept"] >= 3, f"acknowledged deltas not kept until durable_seq: {stats}"
    return boss, copy


def _roll_back(boss_id: int, copy: dict[str, bytes | None]) -> None:
    """The authority comes back as the copy was (one MULTI: the tick never sees half of it)."""
    client, _ = _authority_keys(boss_id)
    with client.pipeline(transaction=True) as pipe:
        for name, dump in copy.items():
            pipe.delete(name)
            if dump is not None:
                pipe.restore(name, 0, dump)
        pipe.execute()
    client.close()


def _restored(boss_id: int) -> bool:
    return SagaRun.objects.filter(boss_id=boss_id, kind=SagaKind.RESTORE).exists()


def rollback(ctx: Context) -> str:
    """The authority rolls back behind what it acknowledged: the SDK sees the lower
    ``last_seq`` in a ``heartbeat_ack`` and re-sends its kept deltas (after ``durable_seq``)
    under their own seqs. No new hit is needed for it."""
    boss, copy = _rollback_setup(ctx, heartbeat_ms=100)
    _roll_back(boss.pk, copy)
    wait_until(
        lambda: ctx.driver.call("stats")["replayed"] > 0 or _restored(boss.pk),
        what="the kept deltas re-sent (or the archive's restore)",
    )
    stats = _flushed(ctx)
    how = f"{stats['replayed']} deltas re-sent" if stats["replayed"] else "restored from the archive"
    return ctx.books(boss, stats["generated"][boss.slug], how)


def seq_gap(ctx: Context) -> str:
    """After a rollback (its heartbeat acks lost), the next delta is ahead of the authority:
    ``seq_gap`` with ``last_seq``; the SDK re-sends its kept deltas, then the new one."""
    boss, copy = _rollback_setup(ctx)
    ctx.proxy.set(drop_server={"heartbeat_ack": 10**6})
    _roll_back(boss.pk, copy)
    _fight(ctx, boss.slug, 5)
    wait_until(lambda: ctx.proxy.seen.error_codes["seq_gap"] > 0 or _restored(boss.pk), what="a seq_gap")
    ctx.proxy.reset()
    stats = _flushed(ctx)
    if not _restored(boss.pk):
        assert stats["replayed"] > 0 and stats["errors"].get("seq_gap", 0) >= 1, stats
    return ctx.books(boss, stats["generated"][boss.slug], f"{stats['replayed']} deltas re-sent after seq_gap")


def tickets(ctx: Context) -> str:
    """Every signing vector reproduced byte for byte; a fresh ticket admits a player to the platform."""
    vectors = json.loads((VECTORS / "tickets.json").read_text())
    for case in vectors["sign"]:
        args = {
            k: case[k] for k in ("secret", "key_id", "player", "ttl_s", "now_s", "shard", "boss") if k in case
        }
        got = ctx.driver.call("sign_ticket", **args)["ticket"]
        assert got == case["ticket"], f"{case['player']}: {got} != {case['ticket']}"
    first = vectors["sign"][0]
    fresh = ctx.driver.call(
        "sign_ticket",
        secret=first["secret"],
        key_id=first["key_id"],
        player="kit-player",
        ttl_s=60,
        shard=ctx.hosted,
        now_s=time.time(),
    )["ticket"]
    url = f"{ctx.platform.ws_url}/ws/shards/{quote(ctx.hosted)}/?ticket={quote(fresh)}"
    with connect(url, open_timeout=10) as ws:
        welcome = json.loads(ws.recv(timeout=10))
    assert welcome.get("type") == "welcome" and welcome.get("player") == "kit-player", welcome
    return f"{len(vectors['sign'])} vectors; the platform admitted the signed player"


def webhooks(ctx: Context) -> str:
    """Every webhook vector gets the verdict the platform's verifier gives."""
    cases = json.loads((VECTORS / "webhooks.json").read_text())["cases"]
    for case in cases:
        args = {k: case[k] for k in ("secret", "body", "timestamp", "signature", "tolerance_s", "now_s")}
        got = ctx.driver.call("verify_webhook", **args)
        verdict = "ok" if got["valid"] else got.get("code")
        assert verdict == case["expect"], f"{case['name']}: {verdict} != {case['expect']}"
    return f"{len(cases)} vectors"


SCENARIOS: dict[str, Callable[[Context], str]] = {
    "exactly_once": exactly_once,
    "resume": resume,
    "dead_link": dead_link,
    "paused": paused,
    "authority_unavailable": authority_unavailable,
    "rate_limited": rate_limited,
    "fenced": fenced,
    "stale_epoch": stale_epoch,
    "rollback": rollback,
    "seq_gap": seq_gap,
    "bye": bye,
    "crash_fair": crash_fair,
    "crash_harsh": crash_harsh,
    "stale_heartbeat": stale_heartbeat,
    "tickets": tickets,
    "webhooks": webhooks,
}
