"""The protocol has one source (sdk/worldboss_sdk/protocol.py): the typed errors take their
codes from it, docs/protocol.md documents every code in it, and the SDK keeps no copy."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import core.errors
import worldboss_sdk
import worldboss_sdk.errors
from worldboss_sdk.errors import LiveOpsError
from worldboss_sdk.protocol import (
    ENDED_STATUSES,
    PERMANENT_CLOSE_CODES,
    CloseCode,
    ErrorCode,
    Status,
    as_dict,
)

ROOT = Path(__file__).resolve().parents[2]
SDK = Path(worldboss_sdk.__file__).resolve().parent
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"


def _constants(cls: type) -> dict[str, object]:
    return {name: value for name, value in vars(cls).items() if name.isupper()}


ERROR_CODES = set(_constants(ErrorCode).values())
CLOSE_CODES = set(_constants(CloseCode).values())


def _typed_errors() -> list[type[LiveOpsError]]:
    found = {LiveOpsError}
    for module in (core.errors, worldboss_sdk.errors):
        found.update(
            obj for _, obj in inspect.getmembers(module, inspect.isclass) if issubclass(obj, LiveOpsError)
        )
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


@pytest.mark.parametrize("error", _typed_errors(), ids=lambda cls: cls.__qualname__)
def test_every_typed_error_has_a_protocol_code(error: type[LiveOpsError]) -> None:
    assert error.code in ERROR_CODES, f"{error.__module__}.{error.__qualname__}.code = {error.code!r}"
    # an instance reports the same code on the wire
    assert error("detail").code == error.code


def test_the_typed_errors_cover_the_platforms_refusals() -> None:
    # the scan above found the server's errors, not just the SDK's base class
    names = {cls.__qualname__ for cls in _typed_errors()}
    assert {"Fenced", "SeqGap", "RateLimited", "BufferFull", "LiveOpsError"} <= names


def test_error_codes_are_distinct() -> None:
    values = list(_constants(ErrorCode).values())
    assert len(values) == len(set(values))
    closes = list(_constants(CloseCode).values())
    assert len(closes) == len(set(closes))


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_every_error_code_is_documented(code: str) -> None:
    # documented as a row of the error table: | `code` | from | extras | meaning |
    rows = re.findall(r"^\| `([a-z_]+)` \|", PROTOCOL_DOC.read_text(), re.M)
    assert code in rows, f"docs/protocol.md has no row for error code `{code}`"


@pytest.mark.parametrize("code", sorted(CLOSE_CODES))
def test_every_close_code_is_documented(code: int) -> None:
    rows = re.findall(r"^\| (\d{4}) \|", PROTOCOL_DOC.read_text(), re.M)
    assert str(code) in rows, f"docs/protocol.md has no row for close code {code}"


def test_the_documented_codes_are_the_protocols() -> None:
    """Nothing in the doc's tables that the protocol does not define (docs stay true both ways)."""
    text = PROTOCOL_DOC.read_text()
    close_rows = {int(c) for c in re.findall(r"^\| (\d{4}) \|", text, re.M)}
    error_rows = set(
        re.findall(r"^\| `([a-z_]+)` \| (?:core/errors\.py|sdk/worldboss_sdk/errors\.py) \|", text, re.M)
    )
    assert close_rows == CLOSE_CODES
    assert error_rows == ERROR_CODES


def test_as_dict_carries_every_constant_the_pages_need() -> None:
    data = as_dict()
    assert data["close"] == _constants(CloseCode)
    assert data["errors"] == _constants(ErrorCode)
    assert data["status"] == _constants(Status)
    assert set(data["permanentCloseCodes"]) == PERMANENT_CLOSE_CODES
    assert set(data["endedStatuses"]) == ENDED_STATUSES
    assert PERMANENT_CLOSE_CODES <= CLOSE_CODES and set(data["status"].values()) >= ENDED_STATUSES


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def close_code_literals(source: str) -> list[tuple[int, int]]:
    """``(line, value)`` of every number in ``source`` that stands for a close code.

    Any 4000-4999 counts (RFC 6455 leaves that range to applications: in this code it can
    only be one of ours). The RFC's own codes (1000, 1009, 1013) count where a close code is
    used: compared (``code == 1000``, ``code in (1000, 1013)``) or passed to ``close()``;
    elsewhere they are other numbers (``heartbeat_ms=1000``, ``tick_ms / 1000``).
    """
    tree = ast.parse(source)
    used: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                used.add(id(operand))
                if isinstance(operand, (ast.Tuple, ast.List, ast.Set)):
                    used.update(id(element) for element in operand.elts)
        elif isinstance(node, ast.Call) and _called_name(node) == "close":
            used.update(id(arg) for arg in (*node.args, *(kw.value for kw in node.keywords)))
    return sorted(
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and type(node.value) is int
        and (4000 <= node.value <= 4999 or (node.value in CLOSE_CODES and id(node) in used))
    )


def test_the_scan_finds_a_close_code_number() -> None:
    source = (
        "def f(heartbeat_ms=1000):\n"
        "    if code in (4401, 4404) or code == 1013:\n"
        "        ws.close(1000)\n"
        "    FATAL = 4403\n"
        "    return heartbeat_ms / 1000\n"
    )
    assert close_code_literals(source) == [(2, 1013), (2, 4401), (2, 4404), (3, 1000), (4, 4403)]


@pytest.mark.parametrize(
    "module", sorted(p.name for p in SDK.glob("*.py") if p.name != "protocol.py"), ids=str
)
def test_the_sdk_has_no_close_code_number_of_its_own(module: str) -> None:
    found = close_code_literals((SDK / module).read_text())
    assert not found, f"sdk/worldboss_sdk/{module} has close code numbers {found}: use protocol.CloseCode"
