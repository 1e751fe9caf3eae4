"""A Python SDK with one bug, for the kit's own test (the bug named by the first argument):

* ``settled``: on ``fenced`` it keeps what the crash saga settled (it ignores ``settled``), so
  under a *fair* boss that damage would land twice;
* ``keeps``: it forgets acknowledged deltas at once (it ignores ``durable_seq``), so what an
  authority rollback took back is lost;
* ``pings``: no keepalive pings, so a link that went silent is noticed only when the
  platform has fenced the session;
* ``unsent``: its heartbeats leave out ``sent``, so one that arrives after a later delta
  replaces the report and a *fair* saga settles that damage again.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from worldboss_sdk import ShardClient
from worldboss_sdk.buffer import LocalBuffer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "conformance" / "drivers"))
import python_driver

if sys.argv[1:] == ["settled"]:
    fenced = LocalBuffer.fenced
    LocalBuffer.fenced = lambda self, *, last_seq, settled: fenced(self, last_seq=last_seq, settled=0)  # type: ignore[method-assign]
elif sys.argv[1:] == ["keeps"]:
    acked = LocalBuffer.acked

    def acked_forgetting(self: LocalBuffer, seq: int) -> bool:
        done = acked(self, seq)
        self.kept.clear()
        return done

    LocalBuffer.acked = acked_forgetting  # type: ignore[method-assign]
elif sys.argv[1:] == ["pings"]:
    init = ShardClient.__init__

    def init_without_pings(self: ShardClient, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.ping_interval_s = None

    ShardClient.__init__ = init_without_pings  # type: ignore[method-assign]
elif sys.argv[1:] == ["unsent"]:
    beat = ShardClient._heartbeat_frame

    def beat_unsent(self: ShardClient, *args: Any) -> str | None:
        frame = beat(self, *args)
        return (
            None if frame is None else json.dumps({k: v for k, v in json.loads(frame).items() if k != "sent"})
        )

    ShardClient._heartbeat_frame = beat_unsent  # type: ignore[method-assign]
else:
    raise SystemExit(f"usage: broken_driver.py settled|keeps|pings|unsent, not {sys.argv[1:]}")

asyncio.run(python_driver.main())
