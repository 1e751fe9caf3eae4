"""A Python SDK with one bug, for the kit's own test: on ``fenced`` it keeps what the crash
saga settled (it ignores ``settled``), so under a *fair* boss that damage would land twice."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from worldboss_sdk.buffer import LocalBuffer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "conformance" / "drivers"))
import python_driver

fenced = LocalBuffer.fenced
LocalBuffer.fenced = lambda self, *, last_seq, settled: fenced(self, last_seq=last_seq, settled=0)  # type: ignore[method-assign]

asyncio.run(python_driver.main())
