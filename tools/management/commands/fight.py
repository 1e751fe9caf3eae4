"""``manage.py fight --url URL --boss SLUG --shards N --players M --duration S [--json]``.

A load generator over real WebSockets against a running server: M platform-hosted players
attacking through N hosted shards, and K SDK game servers (``--sdk``) sending aggregated
damage. Shows a progress bar, then reports attacks/s sent and acked, SDK hits/s, freshness
p50/p99, states received/s, and runs ``verify_boss`` (exit 1 when an invariant fails).

It runs next to the platform (same database and Redis settings): it creates its shards
(``<prefix>-h<n>``, ``<prefix>-s<n>``, fresh tokens for the SDK ones) and verifies the boss.
"""

from __future__ import annotations

import json as jsonlib
import sys
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from bosses.models import BossStatus
from bosses.selectors import boss_get, boss_tick_times_ms
from bosses.verification import boss_verify
from core import keys
from core.errors import UnknownBoss
from core.redis import get_redis
from tools.simsetup import boss_accepted, fight_settle, sim_shards_ensure

BAR_WIDTH = 24


def progress_line(stats, duration_s: float | None) -> str:
    """One progress line: bar, time, HP, version, rates."""
    e = stats.elapsed
    if duration_s:
        frac = min(1.0, e / duration_s)
    else:
        frac = 1 - stats.hp / stats.max_hp if stats.max_hp and stats.hp is not None else 0.0
    filled = int(frac * BAR_WIDTH)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    hp = f"{stats.hp:,}/{stats.max_hp:,}" if stats.hp is not None else "?"
    return (
        f"[{bar}] {e:5.1f}s hp {hp} v{stats.version} | attacks {stats.attacks_sent / e:,.0f}/s sent "
        f"{stats.attacks_acked / e:,.0f}/s acked | sdk {stats.sdk_hits / e:,.0f} hits/s | "
        f"states {stats.states / e:,.1f}/s"
    )


class Command(BaseCommand):
    help = "Simulated players and game servers over real WebSockets against a running server."

    def add_arguments(self, parser):
        parser.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8000")
        parser.add_argument("--boss", required=True, help="boss slug (must be live)")
        parser.add_argument("--shards", type=int, default=4, help="hosted shards the players spread over")
        parser.add_argument("--players", type=int, default=100, help="platform-hosted players")
        parser.add_argument("--sdk", type=int, default=2, help="SDK game servers (aggregated damage)")
        parser.add_argument(
            "--sdk-rate",
            type=float,
            default=20_000.0,
            help="hits/s of each SDK game server (0: as fast as it can)",
        )
        parser.add_argument(
            "--sdk-processes",
            type=int,
            default=0,
            help="run the SDK game servers in this many child processes (0: in this one)",
        )
        parser.add_argument("--attack-rate", type=float, default=5.0, help="attacks/s of each hosted player")
        parser.add_argument(
            "--duration", type=float, default=30.0, help="seconds (stops early if the boss dies)"
        )
        parser.add_argument("--prefix", default="fight", help="key prefix of the simulator's shards")
        parser.add_argument("--json", action="store_true", help="print the report as JSON only")

    def handle(self, *args, **options):
        from tools.bench.harness import run_loop
        from tools.simulator import Fight

        boss_obj, plan = self._plan(options)
        json = options["json"]
        accepted_before = boss_accepted(boss_id=boss_obj.pk)
        fight = Fight(plan)
        show = not json
        tty = sys.stderr.isatty()

        def on_tick(stats) -> None:
            if show and stats.started:
                line = progress_line(stats, plan.duration_s)
                self.stderr.write(("\r" + line) if tty else line, ending="" if tty else "\n")

        try:
            stats = run_loop(fight.run(on_tick=on_tick, tick_s=0.5 if tty else 2.0))
        except KeyboardInterrupt:
            raise CommandError("interrupted") from None
        if show and tty:
            self.stderr.write("")
        result, ok = _result(stats, boss_obj, accepted_before)
        if json:
            self.stdout.write(jsonlib.dumps(result, indent=2))
        else:
            self._print(result)
        if not ok:
            sys.exit(1)

    def _plan(self, o: dict):
        """The live boss and the fight to run, from the command's options (CommandError on a bad one)."""
        from tools.simulator import FightPlan

        self._check(
            url=o["url"],
            shards=o["shards"],
            players=o["players"],
            sdk=o["sdk"],
            sdk_rate=o["sdk_rate"],
            attack_rate=o["attack_rate"],
            duration=o["duration"],
        )
        if not 0 <= o["sdk_processes"] <= 64:
            raise CommandError(f"--sdk-processes must be between 0 and 64, got {o['sdk_processes']}")
        try:
            boss_obj = boss_get(slug=o["boss"])
        except UnknownBoss as exc:
            raise CommandError(str(exc)) from None
        status = get_redis().hget(keys.BossKeys(boss_obj.pk).state, "status")
        if status != BossStatus.LIVE:
            raise CommandError(
                f"boss {o['boss']} is {status or boss_obj.status}, not live; take it live first"
            )
        try:
            specs = sim_shards_ensure(
                prefix=o["prefix"], hosted=o["shards"] if o["players"] else 0, sdk=o["sdk"]
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        return boss_obj, FightPlan(
            url=o["url"],
            boss=o["boss"],
            shards=specs,
            players=o["players"],
            attacks_per_player_s=o["attack_rate"],
            sdk_hits_per_s=o["sdk_rate"] or None,
            sdk_processes=o["sdk_processes"],
            duration_s=o["duration"],
        )

    def _check(self, *, url, shards, players, sdk, sdk_rate, attack_rate, duration) -> None:
        p = urlsplit(url)
        if p.scheme not in ("http", "https", "ws", "wss") or not p.netloc:
            raise CommandError(f"--url must look like http://host:port, got {url!r}")
        for name, value, low, high in (
            ("--shards", shards, 1, 1_000),
            ("--players", players, 0, 50_000),
            ("--sdk", sdk, 0, 1_000),
        ):
            if not low <= value <= high:
                raise CommandError(f"{name} must be between {low} and {high:,}, got {value}")
        if players == 0 and sdk == 0:
            raise CommandError("nothing to simulate: give --players and/or --sdk")
        if not 0 < duration <= 86_400:
            raise CommandError(f"--duration must be between 0 and 86400 seconds, got {duration}")
        if not 0 < attack_rate <= 100:
            raise CommandError(f"--attack-rate must be in (0, 100] attacks/s, got {attack_rate}")
        if sdk_rate < 0:
            raise CommandError(f"--sdk-rate must be >= 0, got {sdk_rate}")

    def _print(self, r: dict) -> None:
        w = self.stdout.write
        w(
            f"fight on {r['boss']}: {r['seconds']} s, {r['players_connected']} players, "
            f"{r['servers_connected']} SDK servers ({r['connect_errors']} connect errors)"
        )
        w(
            f"  attacks: {r['attacks_sent_per_s']:,.0f}/s sent, {r['attacks_acked_per_s']:,.0f}/s acked, "
            f"refused {r['attacks_refused'] or 'none'}"
        )
        w(
            f"  SDK: {r['sdk_hits_per_s']:,.0f} hits/s in {r['sdk_deltas']:,} deltas, "
            f"errors {r['sdk_errors'] or 'none'}"
        )
        w(
            f"  states received: {r['states_per_s']:,.1f}/s (last v{r['final_version_seen']}, "
            f"hp {r['final_hp_seen']}, {r['status_seen']})"
        )
        if "freshness_p99_ms" in r:
            w(
                f"  freshness (hit -> first state including it): p50 {r['freshness_p50_ms']} ms, "
                f"p99 {r['freshness_p99_ms']} ms over {r['freshness_samples']} samples"
            )
        w(
            f"  damage acked {r['damage_acked']:,}, accepted by the platform {r['damage_accepted_during_fight']:,}"
            f" -> {'accounted' if r['damage_accounted'] else 'NOT accounted'}"
        )
        v = r["verify"]
        w(
            f"verify_boss {r['boss']}: hp {v['hp']:,}/{v['max_hp']:,} v{v['version']}, accepted {v['accepted']:,} = "
            f"applied {v['applied']:,} + overkill {v['overkill']:,} + buffered {v['buffered']:,}"
        )
        if r["verify_ok"]:
            w(self.style.SUCCESS("verify_boss: OK, every invariant holds"))
        for problem in v["problems"]:
            self.stderr.write(self.style.ERROR(f"verify_boss FAIL: {problem}"))


def _result(stats, boss_obj, accepted_before: int) -> tuple[dict, bool]:
    """The report (after the buffers settled) and whether ``verify_boss`` holds."""
    from tools.simulator import fight_result

    acked = stats.attack_damage + stats.sdk_damage_acked
    settled = fight_settle(boss_id=boss_obj.pk, expected_accepted=accepted_before + acked)
    result = fight_result(stats, get_redis().xrange(keys.BossKeys(boss_obj.pk).log))
    accepted_after = boss_accepted(boss_id=boss_obj.pk)
    boss_obj.refresh_from_db()
    report = boss_verify(boss=boss_obj)
    result.update(
        {
            "boss": boss_obj.slug,
            "settled": settled,
            "damage_acked": acked,
            "damage_accepted_during_fight": accepted_after - accepted_before,
            # every acknowledged hit is in the authority (nothing else hit this boss meanwhile)
            "damage_accounted": accepted_after - accepted_before == acked or report.status != "live",
            "verify_ok": report.ok,
            "verify": report.as_dict(),
            "tick_times": _tick_summary(),
        }
    )
    return result, report.ok


def _tick_summary() -> dict:
    from tools.bench.harness import percentile

    times = boss_tick_times_ms(limit=600)
    gaps = [b - a for a, b in zip(times, times[1:])]
    return {"n": len(gaps), "p50_ms": percentile(gaps, 50), "p99_ms": percentile(gaps, 99)}
