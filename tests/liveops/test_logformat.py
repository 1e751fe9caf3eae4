"""JSON log lines (LOG_FORMAT=json): context fields at the top level, secrets redacted."""

from __future__ import annotations

import json
import logging

from core.redaction import redact
from liveops.logformat import JsonFormatter, TextFormatter, logging_config


def record(msg: str, *args, exc=None, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("bosses.services", logging.ERROR, __file__, 1, msg, args, exc)
    rec.__dict__.update(extra)
    return rec


def test_json_line_carries_boss_shard_and_epoch():
    line = json.loads(
        JsonFormatter().format(record("tick of boss %s failed", 7, boss="ragnaros", shard="eu-1", epoch=3))
    )
    assert line["message"] == "tick of boss 7 failed" and line["level"] == "ERROR"
    assert (line["boss"], line["shard"], line["epoch"]) == ("ragnaros", "eu-1", 3)
    assert line["logger"] == "bosses.services" and line["ts"].endswith("+00:00")


def test_secrets_are_redacted_in_messages_extras_and_tracebacks():
    try:
        raise ConnectionError("cannot reach redis://:hunter2@10.0.0.5:6379/0")
    except ConnectionError as exc:
        rec = record(
            "auth %s with Authorization: Bearer abc.def.ghi, %s",
            "postgres://app:pgpass@db:5432/live",
            "token=zzz123",
            exc=(type(exc), exc, exc.__traceback__),
            shard="url=redis://u:pw2@h/0",
        )
    for text in (JsonFormatter().format(rec), TextFormatter("%(message)s").format(rec)):
        for secret in ("hunter2", "pgpass", "abc.def.ghi", "zzz123", "pw2"):
            assert secret not in text, (secret, text)
        assert "10.0.0.5:6379" in text and "db:5432/live" in text
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_log_format_setting_picks_the_formatter():
    assert logging_config(log_format="json", level="INFO")["handlers"]["console"]["formatter"] == "json"
    assert logging_config(log_format="text", level="INFO")["handlers"]["console"]["formatter"] == "text"
