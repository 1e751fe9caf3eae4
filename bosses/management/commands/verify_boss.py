"""``manage.py verify_boss SLUG [--json]``: check every invariant; exit 0 ok, 1 not ok."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from bosses.selectors import boss_get
from bosses.verification import boss_verify
from core.errors import UnknownBoss


class Command(BaseCommand):
    help = "Check a boss's invariants: ledger equation, hp, event-log replay, versions, settlements."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, slug: str, json: bool, **options):
        try:
            boss = boss_get(slug=slug)
        except UnknownBoss as exc:
            raise CommandError(str(exc)) from None
        report = boss_verify(boss=boss)
        if json:
            self.stdout.write(report.to_json())
        else:
            self.stdout.write(
                f"{boss.slug} ({report.status}): hp {report.hp:,}/{report.max_hp:,} v{report.version}\n"
                f"  accepted {report.accepted:,} = applied {report.applied:,} + mitigated {report.mitigated:,} + overkill "
                f"{report.overkill:,} + buffered {report.buffered:,}; healed {report.healed:,}\n"
                f"  recovered {report.recovered:,}, discarded {report.discarded:,}, "
                f"replay hp {report.replay_hp:,} over {report.events} events"
            )
            if report.ok:
                self.stdout.write(self.style.SUCCESS("OK: every invariant holds"))
            for problem in report.problems:
                self.stderr.write(self.style.ERROR(f"FAIL: {problem}"))
        if not report.ok:
            sys.exit(1)
