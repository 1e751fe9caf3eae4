"""Text the platform stores or looks up: what no request may carry (docs/security.md, "Text").

PostgreSQL refuses NUL in text, and a lone surrogate (``"\\ud800"`` in JSON) cannot be
encoded for any database: either would reach the database driver and fail there (HTTP
500). They are refused where text enters, with one rule: :func:`text_problem` on every
string of a JSON body (keys too) or a form, and :func:`url_text_problem`, stricter, on the
path and the query string, where no control character belongs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# NUL and UTF-16 surrogates (only a lone one survives decoding into a Python str).
_INVALID_TEXT = re.compile("[\x00\ud800-\udfff]")
# ... and every C0 control character and DEL: a URL has no use for them.
_INVALID_URL_TEXT = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
# JSON nests; a body is at most 64 KiB, but the walk is bounded on its own too.
MAX_DEPTH = 64


def _describe(char: str) -> str:
    return "NUL" if char == "\x00" else f"U+{ord(char):04X}"


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored (``"contains NUL"``), or None when it can."""
    found = _INVALID_TEXT.search(value)
    return f"contains {_describe(found.group())}" if found else None


def url_text_problem(value: str) -> str | None:
    """:func:`text_problem` plus control characters (a path segment, a query key or value)."""
    found = _INVALID_URL_TEXT.search(value)
    return f"contains {_describe(found.group())}" if found else None


def text_clean(value: str) -> str:
    """``value`` with what :func:`text_problem` refuses replaced by U+FFFD (for a record of
    a refused input, such as the audit trail's target or detail)."""
    return _INVALID_TEXT.sub("\ufffd", value)


def json_text_clean(value: Any, *, depth: int = 0) -> Any:
    """:func:`text_clean` on every string (keys too) of a JSON-like value."""
    if isinstance(value, str):
        return text_clean(value)
    if depth >= MAX_DEPTH:
        return None
    if isinstance(value, dict):
        return {text_clean(str(k)): json_text_clean(v, depth=depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_text_clean(v, depth=depth + 1) for v in value]
    return value


def _printable_key(key: str) -> str:
    return ascii(key)[1:-1] if text_problem(key) else key


def json_text_problem(value: Any, *, path: str = "", depth: int = 0) -> tuple[str, str] | None:
    """The first string in a decoded JSON value (keys included) that cannot be stored, as
    ``(where, problem)`` with ``where`` a dotted path (``"phases.0.name"``; a refused key
    escaped, ``"k\\x00"``), or None."""
    if isinstance(value, str):
        problem = text_problem(value)
        return (path, problem) if problem else None
    if depth >= MAX_DEPTH:
        return (path, f"nests deeper than {MAX_DEPTH} levels")
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        name = _printable_key(key) if isinstance(key, str) else str(key)
        where = f"{path}.{name}" if path else name
        if isinstance(key, str) and (problem := text_problem(key)):
            return (where, f"key {problem}")
        if found := json_text_problem(item, path=where, depth=depth + 1):
            return found
    return None
