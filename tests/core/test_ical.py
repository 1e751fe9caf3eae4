"""The ICS feed's text: escaping, line folding at 75 octets, CRLF, UTC instants."""

from __future__ import annotations

from datetime import UTC, datetime

from core.ical import CalendarEvent, calendar_text


def test_long_and_special_text_is_escaped_and_folded():
    at = datetime(2027, 6, 5, 18, tzinfo=UTC)
    name = "Ünïcode, wyrm; of the \\ north " * 4
    text = calendar_text(
        name="feed", events=[CalendarEvent(uid="spawn-1-2@w", start=at, end=None, summary=name)], now=at
    )
    lines = text.split("\r\n")
    assert lines[-1] == "" and all(len(line.encode()) <= 75 for line in lines)
    unfolded = text.replace("\r\n ", "")
    assert "SUMMARY:Ünïcode\\, wyrm\\; of the \\\\ north " in unfolded
    assert "DTSTART:20270605T180000Z\r\n" in unfolded and "DTEND" not in unfolded
