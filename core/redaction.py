"""Secrets out of text that leaves the process (log lines, health answers). Django-free.

Redacted: the password of any URL (``redis://:s3cret@host`` -> ``redis://:***@host``,
``postgres://u:pw@h/db`` -> ``postgres://u:***@h/db``), bearer tokens, and the value of
anything called token, password, secret or api key in ``key=value`` / ``"key": "value"``
form (a query string, a frame, a settings dump).
"""

from __future__ import annotations

import re

MASK = "***"

_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@", re.IGNORECASE)
_BEARER = re.compile(r"(?P<head>\bbearer\s+)[^\s\"',;]+", re.IGNORECASE)
_KEY_VALUE = re.compile(
    r"(?P<head>\b[\w-]*(?:token|password|passwd|secret|api[_-]?key)[\w-]*[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<value>[^\s\"',&;}]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with every secret this module knows the shape of replaced by ``***``."""
    text = _URL_PASSWORD.sub(rf"\g<head>{MASK}@", text)
    text = _BEARER.sub(rf"\g<head>{MASK}", text)
    return _KEY_VALUE.sub(rf"\g<head>{MASK}", text)
