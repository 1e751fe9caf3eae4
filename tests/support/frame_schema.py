"""Check frames against the protocol's TypedDicts (core/messages.py), in the style of Zulip's
``event_schema``: required and optional keys, no unknown key, the type of every value (nested
TypedDicts, ``Literal``, unions, lists, dicts).

``check_frame(frame)`` looks the schema up by the frame's ``type``; ``check(schema, value)``
checks any value against any type. A failure raises :class:`FrameSchemaError` naming the path
of the offending value (``state.ts``, ``overview.bosses[0].hp``).

``receive_checked`` is installed by the autouse fixture of tests/conftest.py on the receive
methods of the socket clients the tests use (Channels' ``WebsocketCommunicator`` and
``websockets``' client connection, which the SDK uses too): every frame a test receives over
a socket is checked before the test sees it.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

from core.messages import FRAMES


class FrameSchemaError(AssertionError):
    """A frame that does not match its TypedDict."""


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def check(schema: Any, value: Any, path: str = "frame") -> None:
    """Raise :class:`FrameSchemaError` unless ``value`` is of type ``schema``."""
    if schema is Any:
        return
    if is_typeddict(schema):
        return _check_typeddict(schema, value, path)
    origin = get_origin(schema)
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in get_args(schema)):
            raise FrameSchemaError(f"{path}: {value!r} is not one of {get_args(schema)}")
        return
    if _is_union(schema):
        errors = []
        for option in get_args(schema):
            try:
                return check(option, value, path)
            except FrameSchemaError as err:
                errors.append(str(err))
        raise FrameSchemaError(f"{path}: {value!r} matches none of {schema}: {'; '.join(errors)}")
    if origin is list:
        if not isinstance(value, list):
            raise FrameSchemaError(f"{path}: expected a list, got {value!r}")
        (item,) = get_args(schema) or (Any,)
        for i, v in enumerate(value):
            check(item, v, f"{path}[{i}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise FrameSchemaError(f"{path}: expected an object, got {value!r}")
        key_type, value_type = get_args(schema) or (Any, Any)
        for k, v in value.items():
            check(key_type, k, f"{path} key")
            check(value_type, v, f"{path}.{k}")
        return
    _check_scalar(schema, value, path)


def _check_scalar(schema: Any, value: Any, path: str) -> None:
    if schema is None or schema is type(None):
        ok = value is None
    elif schema is bool:
        ok = isinstance(value, bool)
    elif schema is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif schema is float:  # JSON has one number type: 12 is a valid float
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif schema is str:
        ok = isinstance(value, str)
    else:
        raise TypeError(f"{path}: the checker does not know the type {schema!r}")
    if not ok:
        raise FrameSchemaError(f"{path}: expected {getattr(schema, '__name__', schema)}, got {value!r}")


def _fields(schema: type) -> dict[str, Any]:
    hints = get_type_hints(schema, include_extras=True)
    # NotRequired[...] is kept by include_extras; the required/optional sets say it already
    return {name: _strip_required(tp) for name, tp in hints.items()}


def _strip_required(tp: Any) -> Any:
    if get_origin(tp) in (typing.NotRequired, typing.Required):
        return get_args(tp)[0]
    return tp


def _check_typeddict(schema: type, value: Any, path: str) -> None:
    if not isinstance(value, Mapping):
        raise FrameSchemaError(f"{path}: expected an object ({schema.__name__}), got {value!r}")
    fields = _fields(schema)
    required: frozenset[str] = schema.__required_keys__  # type: ignore[attr-defined]
    missing = sorted(required - value.keys())
    if missing:
        raise FrameSchemaError(f"{path}: missing key(s) {missing} ({schema.__name__})")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise FrameSchemaError(f"{path}: unknown key(s) {unknown} ({schema.__name__})")
    for name, v in value.items():
        check(fields[name], v, f"{path}.{name}")


def schema_fields(schema: type) -> dict[str, bool]:
    """``{field: required}`` of a TypedDict (what docs/protocol.md's tables list)."""
    required: frozenset[str] = schema.__required_keys__  # type: ignore[attr-defined]
    return {name: name in required for name in _fields(schema)}


def check_frame(frame: Any) -> None:
    """Check one server frame against the TypedDict of its ``type`` (an unknown type fails)."""
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise FrameSchemaError(f"not a protocol frame (an object with a string type): {frame!r}")
    schema = FRAMES.get(frame["type"])
    if schema is None:
        raise FrameSchemaError(f"no schema for frame type {frame['type']!r} (core/messages.py FRAMES)")
    check(schema, frame, frame["type"])


def check_text(text: Any) -> None:
    """Check a received text frame; what is not a JSON object with a ``type`` is not a protocol
    frame (binary data, a test server's own replies) and is left alone."""
    if not isinstance(text, str):
        return
    try:
        frame = json.loads(text)
    except ValueError:
        return
    if isinstance(frame, dict) and "type" in frame:
        check_frame(frame)


def receive_checked(receive: Any) -> Any:
    """Wrap an async receive method so every text it returns is checked first."""

    async def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        text = await receive(self, *args, **kwargs)
        check_text(text)
        return text

    checked.__wrapped__ = receive  # type: ignore[attr-defined]
    return checked


def type_text(tp: Any) -> str:
    """How docs/protocol.md's "Frame fields" tables write a field's type (JSON's names)."""
    tp = _strip_required(tp)
    if tp is Any:
        return "any"
    if is_typeddict(tp):
        frame = next((name for name, schema in FRAMES.items() if schema is tp), None)
        return f"a `{frame}` frame" if frame is not None else "object (below)"
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(f"`{a!r}`".replace("'", '"') for a in get_args(tp))
    if _is_union(tp):
        return " or ".join(type_text(a) for a in get_args(tp))
    if origin is list:
        return f"array of {type_text(get_args(tp)[0])}"
    if origin is dict:
        return f"object of {type_text(get_args(tp)[1])}"
    names = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}
    return names[tp]


def field_rows(schema: type) -> list[tuple[str, str, bool]]:
    """``(field, type text, required)`` of a TypedDict, in declaration order."""
    hints = get_type_hints(schema, include_extras=True)
    required: frozenset[str] = schema.__required_keys__  # type: ignore[attr-defined]
    return [(name, type_text(tp), name in required) for name, tp in hints.items()]


def documented_schemas() -> dict[str, type]:
    """Every table of docs/protocol.md's "Frame fields": each frame and HTTP body by name, and
    each nested object by its path (``defeated.leaderboard[]``)."""
    from core.messages import BODIES

    out: dict[str, type] = {}

    def walk(name: str, schema: type) -> None:
        out[name] = schema
        for field, tp in get_type_hints(schema).items():
            for inner in _nested(tp):
                walk(f"{name}.{field}{'[]' if get_origin(_strip_required(tp)) is list else ''}", inner)

    for name, schema in [*FRAMES.items(), *BODIES.items()]:
        walk(name, schema)
    return out


def _nested(tp: Any) -> list[type]:
    tp = _strip_required(tp)
    if is_typeddict(tp):
        return [] if tp in FRAMES.values() else [tp]  # a frame inside a frame has its own table
    return [t for arg in get_args(tp) for t in _nested(arg)]
