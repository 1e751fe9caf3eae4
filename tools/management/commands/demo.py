"""``manage.py demo`` (``make demo ARGS="..."``): a whole live fight on this machine (tools/demo.py)."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Start Redis if needed, the ASGI server, a Celery worker and beat, and simulated players; "
        "show the fight live; verify_boss at the end. See docs/demo.md."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--duration",
            type=float,
            default=None,
            help="stop after this many seconds (default: until the boss dies or Ctrl-C)",
        )
        parser.add_argument("--port", type=int, default=8000, help="HTTP/WebSocket port (default 8000)")
        parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
        parser.add_argument(
            "--shards",
            type=int,
            default=4,
            help="shards: half platform-hosted (players), half SDK game servers",
        )
        parser.add_argument("--players", type=int, default=40, help="simulated hosted players")
        parser.add_argument("--boss-hp", type=int, default=25_000_000, help="the demo boss's max HP")
        parser.add_argument(
            "--no-sim", action="store_true", help="no simulated load: attack from the player page yourself"
        )
        parser.add_argument(
            "--redis",
            choices=["auto", "path", "embedded", "cluster"],
            default="auto",
            help="auto: REDIS_URL if reachable, else redis-server on PATH, else embedded "
            "Valkey; path/embedded: always start that one; cluster: start a local 3-master "
            "Redis Cluster (the authority) and a standalone Redis (the broker)",
        )

    def handle(self, *args, duration, port, host, shards, players, boss_hp, no_sim, redis, **options):
        from tools.demo import DemoOptions, demo_run

        opts = DemoOptions(
            duration_s=duration,
            port=port,
            host=host,
            shards=shards,
            players=players,
            boss_hp=boss_hp,
            sim=not no_sim,
            redis=redis,
        )
        try:
            result = demo_run(opts, out=self.stdout._out, err=self.stderr._out)
        except (ValueError, RuntimeError) as exc:
            raise CommandError(str(exc)) from None
        if not result.ok:
            self.stderr.write(f"demo ended badly: {result.reason}")
            sys.exit(1)
