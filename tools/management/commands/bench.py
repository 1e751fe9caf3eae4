"""``manage.py bench [--quick | --smoke] [--json] [--markdown FILE]``: the side-by-side benchmark.

Runs on its own Redis databases (13 authority, 14 broker, 15 fan-out: never 0-7) of the
Redis at ``--redis-url`` / ``BENCH_REDIS_URL`` / ``REDIS_URL``'s host, or on a Redis it starts
itself when none answers, and on its own SQLite file under ``.bench/``. PostgreSQL is used
for the ``SELECT ... FOR UPDATE`` peer when reachable. See docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

CHILD_ENV = "LIVEOPS_BENCH_CHILD"


class Command(BaseCommand):
    help = "Benchmark delta-sync against per-hit peers, ticks, freshness, fan-out and end to end."

    def add_arguments(self, parser):
        size = parser.add_mutually_exclusive_group()
        size.add_argument("--quick", action="store_true", help="every row, short runs (under a minute)")
        size.add_argument(
            "--smoke",
            action="store_true",
            help="every row, tiny loads (seconds): checks the bench works, measures nothing",
        )
        parser.add_argument("--json", action="store_true", help="print the report as JSON only")
        parser.add_argument("--markdown", metavar="FILE", help="also write the Markdown table to FILE")
        parser.add_argument(
            "--redis-url",
            default=os.environ.get("BENCH_REDIS_URL", ""),
            help="Redis to use (its db number is ignored: the bench uses dbs 13-15)",
        )
        parser.add_argument(
            "--only",
            default="",
            help="comma-separated sections: lockstorm,scaling,ticks,fanout,e2e,bosses,durability",
        )

    def handle(
        self,
        *args,
        quick: bool,
        smoke: bool,
        json: bool,
        markdown: str | None,
        redis_url: str,
        only: str,
        **options,
    ):
        from tools.bench import suite

        if os.environ.get(CHILD_ENV):
            mode = "smoke" if smoke else "quick" if quick else "full"
            return self._child(mode=mode, as_json=json, markdown=markdown, only=only)
        run_dir = Path(settings.BASE_DIR) / ".bench"
        from tools.stack import Stack

        with Stack(run_dir=run_dir) as stack:
            try:
                env = suite.bench_environment(
                    stack=stack, redis_url=redis_url or settings.REDIS_URL, run_dir=run_dir
                )
            except (RuntimeError, ValueError) as exc:
                raise CommandError(str(exc)) from None
            if not json:
                self.stdout.write(f"bench: Redis {env['_how']}; dbs 13-15; database {env['DATABASE_URL']}")
            env.pop("_how")
            argv = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "bench", *sys.argv[2:]]
            code = subprocess.call(argv, env={**os.environ, **env, CHILD_ENV: "1"})
        if code:
            raise CommandError(f"bench failed (exit {code})")

    def _child(self, *, mode: str, as_json: bool, markdown: str | None, only: str) -> None:
        from tools.bench import suite

        sections = [s for s in only.split(",") if s] or list(suite.SECTIONS)
        unknown = set(sections) - set(suite.SECTIONS)
        if unknown:
            raise CommandError(f"unknown sections {sorted(unknown)}; choose from {list(suite.SECTIONS)}")
        progress = (lambda s: None) if as_json else (lambda s: self.stderr.write(f"  .. {s}"))
        report = suite.bench_run(mode=mode, sections=sections, progress=progress)
        table = suite.report_markdown(report)
        if markdown:
            Path(markdown).write_text(table)
        if as_json:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self.stdout.write(table)
