"""Log formatters: one JSON object per line (``LOG_FORMAT=json``) or plain text, both redacted.

Hot paths pass what the line is about through ``extra=`` (``boss``, ``shard``, ``epoch``;
see docs/deploy.md, "Logs"); the JSON formatter puts those fields at the top level, so a log
pipeline can filter one fight without parsing messages. Every line goes through
:func:`core.redaction.redact` (URL passwords, bearer tokens, ``token=...``), the traceback too.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from core.redaction import redact

# The ``extra=`` fields the platform's log lines carry (whichever apply).
CONTEXT_FIELDS = ("boss", "shard", "epoch", "seq", "saga", "component")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", [boss, shard, epoch, ...], [exc], "pid"}``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value if isinstance(value, (int, float, bool)) else redact(str(value))
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc"] = redact(record.exc_text)
        line["pid"] = record.process
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The plain format, with the context fields appended and secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(
            f"{name}={record.__dict__[name]}"
            for name in CONTEXT_FIELDS
            if record.__dict__.get(name) is not None
        )
        return redact(f"{text} [{context}]" if context else text)


def logging_config(*, log_format: str, level: str) -> dict:
    """Django's ``LOGGING`` for ``LOG_FORMAT`` (``json`` or ``text``) and ``LOG_LEVEL``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "liveops.logformat.JsonFormatter"},
            "text": {
                "()": "liveops.logformat.TextFormatter",
                "format": "%(message)s",  # as before LOG_FORMAT existed
            },
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if log_format == "json" else "text",
            }
        },
        "root": {"handlers": ["console"], "level": level},
    }
