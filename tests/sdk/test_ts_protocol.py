"""The TypeScript SDK's protocol file is what scripts/ts_protocol.py makes of the server's source now."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("ts_protocol", ROOT / "scripts" / "ts_protocol.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_typescript_protocol_is_current() -> None:
    gen = _generator()
    assert gen.TARGET.read_text() == gen.render(), "run python scripts/ts_protocol.py"


def test_every_server_frame_and_error_code_is_in_it() -> None:
    from core import messages
    from worldboss_sdk.protocol import ErrorCode

    text = _generator().render()
    for cls in messages.FRAMES.values():
        assert f"export interface {cls.__name__} {{" in text
        assert f"  | {cls.__name__}" in text
    for name, code in vars(ErrorCode).items():
        if name.isupper():
            assert f'  {name}: "{code}",' in text
