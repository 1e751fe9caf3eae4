"""Recurring spawns: an RFC 5545 recurrence rule (RRULE) in a time zone, as instants in UTC.

The rule runs on the **wall clock** of its time zone (docs/liveops.md, "Daylight saving"):
"every day at 20:00 Europe/Paris" is 19:00 UTC in winter and 18:00 UTC in summer. A wall time
the spring change skips (02:30 on the last Sunday of March in Paris) happens at the same
instant as the time the clock jumped to plus the rest (03:30 local, 01:30 UTC): zoneinfo's
``fold=0`` reading of a missing time. A wall time the autumn change repeats happens once, at
its first instant (summer time). Two wall times that land on one instant (an hourly rule
across the spring gap) are one occurrence.

Blackout dates are local calendar dates on which the rule spawns nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rrulestr

from core.errors import InvalidInput

# A local day can be 23 to 25 hours, and offsets run from -12 to +14: this margin around a
# UTC window covers every local wall time that can fall inside it.
WINDOW_MARGIN = timedelta(days=2)
RULE_MAX_CHARS = 400
# At most this many occurrences are listed at once (a minutely rule over 14 days is 20,160).
LIST_MAX = 1_000


@dataclass(frozen=True)
class Recurrence:
    """A rule, its first local wall time (DTSTART, naive) and time zone, and blackout dates."""

    rule: str
    start: datetime
    tz: str
    blackouts: frozenset[date] = frozenset()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def _rrule(self) -> rrule:
        parsed = rrulestr(self.rule, dtstart=self.start)
        assert isinstance(parsed, rrule)  # recurrence_parse refused a set
        return parsed

    def to_utc(self, wall: datetime) -> datetime:
        """The instant of a local wall time (``fold=0``: a missing time reads with the offset
        before the change, a repeated one as its first instant)."""
        return wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)

    def between(self, after: datetime, until: datetime, *, limit: int = LIST_MAX) -> list[datetime]:
        """Occurrences (UTC) with ``after < t <= until``, oldest first, blackouts left out."""
        zone = self.zone
        lo = after.astimezone(zone).replace(tzinfo=None) - WINDOW_MARGIN
        hi = until.astimezone(zone).replace(tzinfo=None) + WINDOW_MARGIN
        out: list[datetime] = []
        seen: set[datetime] = set()
        for wall in self._rrule().xafter(max(lo, self.start), inc=True):
            if wall > hi:
                break
            if wall.date() in self.blackouts:
                continue
            at = self.to_utc(wall)
            if after < at <= until and at not in seen:
                seen.add(at)
                out.append(at)
                if len(out) >= limit:
                    break
        return sorted(out)

    def latest(self, *, now: datetime, lookback: timedelta) -> datetime | None:
        """The last occurrence with ``now - lookback < t <= now`` (None if there is none)."""
        found = self.between(now - lookback, now)
        return found[-1] if found else None

    def upcoming(self, *, now: datetime, horizon: timedelta, limit: int = LIST_MAX) -> list[datetime]:
        """Occurrences with ``now < t <= now + horizon``."""
        return self.between(now, now + horizon, limit=limit)

    def next_after(self, *, now: datetime, horizon: timedelta = timedelta(days=400)) -> datetime | None:
        found = self.between(now, now + horizon, limit=1)
        return found[0] if found else None


def blackout_dates_parse(values: Iterable[str]) -> frozenset[date]:
    """ISO dates (``2026-12-24``) or :class:`InvalidInput` naming the bad one."""
    out = set()
    for value in values:
        try:
            out.add(date.fromisoformat(str(value)))
        except ValueError:
            raise InvalidInput(
                f"blackout date {value!r} is not a YYYY-MM-DD date", field="blackout_dates"
            ) from None
    return frozenset(out)


def recurrence_parse(
    *, rule: str, start_date: date, start_time: time, tz: str, blackouts: Iterable[str] = ()
) -> Recurrence:
    """A checked :class:`Recurrence`, or :class:`InvalidInput` naming the field at fault.

    ``rule`` is an RRULE value without DTSTART (``FREQ=WEEKLY;BYDAY=SA,SU``; a leading
    ``RRULE:`` is accepted); the first occurrence's local wall time is ``start_date`` at
    ``start_time`` and, unless the rule says otherwise (BYHOUR...), every occurrence's.
    """
    text = rule.strip().removeprefix("RRULE:")
    if not text or len(text) > RULE_MAX_CHARS:
        raise InvalidInput(f"rule must be 1 to {RULE_MAX_CHARS} characters", field="rule")
    if any(part in text.upper() for part in ("DTSTART", "\n", "EXDATE", "RDATE")):
        raise InvalidInput("rule is one RRULE value (FREQ=...); the start is its own field", field="rule")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {tz!r} (an IANA name, e.g. Europe/Paris)", field="timezone"
        ) from None
    start = datetime.combine(start_date, start_time.replace(tzinfo=None, microsecond=0))
    try:
        parsed = rrulestr(text, dtstart=start)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"rule is not an RFC 5545 RRULE: {exc}", field="rule") from None
    if not isinstance(parsed, rrule):
        raise InvalidInput("rule must be one RRULE", field="rule")
    return Recurrence(rule=text, start=start, tz=tz, blackouts=blackout_dates_parse(blackouts))
