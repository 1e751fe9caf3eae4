"""An iCalendar feed (RFC 5545) of a boss's next spawns: one VEVENT per occurrence, in UTC.

Occurrences are listed one by one rather than as an RRULE: they are the instants the
platform spawns at (blackout dates out, daylight-saving rules of core/recurrence.py applied),
so a calendar app shows exactly what will happen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

PRODID = "-//World Boss live-ops//spawns//EN"
LINE_OCTETS = 75


@dataclass(frozen=True)
class CalendarEvent:
    uid: str
    start: datetime
    end: datetime | None
    summary: str
    url: str = ""


def _text(value: str) -> str:
    """A TEXT value escaped (RFC 5545 3.3.11)."""
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _fold(line: str) -> str:
    """A content line folded at 75 octets (a CRLF and a space before each continuation)."""
    data = line.encode()
    if len(data) <= LINE_OCTETS:
        return line
    parts: list[str] = []
    current = b""
    for char in line:
        encoded = char.encode()
        limit = LINE_OCTETS if not parts else LINE_OCTETS - 1
        if len(current) + len(encoded) > limit:
            parts.append(current.decode())
            current = b""
        current += encoded
    parts.append(current.decode())
    return "\r\n ".join(parts)


def calendar_text(*, name: str, events: Sequence[CalendarEvent], now: datetime) -> str:
    """The whole VCALENDAR, CRLF line endings."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{_text(name)}",
    ]
    for event in events:
        lines += [
            "BEGIN:VEVENT",
            f"UID:{event.uid}",
            f"DTSTAMP:{_stamp(now)}",
            f"DTSTART:{_stamp(event.start)}",
        ]
        if event.end is not None:
            lines.append(f"DTEND:{_stamp(event.end)}")
        lines.append(f"SUMMARY:{_text(event.summary)}")
        if event.url:
            lines.append(f"URL:{event.url}")
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "".join(_fold(line) + "\r\n" for line in lines)
