"""The conformance kit's driver for the Python SDK (worldboss_sdk): JSON lines in, JSON lines out.

Reads one command per line on stdin and answers one line on stdout (conformance/README.md,
"The driver protocol"). Imports the SDK only: it runs in any Python where ``./sdk`` is
installed. Run: ``python conformance/drivers/python_driver.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from worldboss_sdk import BufferFull, ShardClient, __version__, player_ticket_sign
from worldboss_sdk.protocol import PROTOCOL_VERSION
from worldboss_sdk.webhooks import WebhookVerificationError, webhook_verify


class Driver:
    """One SDK client under the kit's commands."""

    def __init__(self) -> None:
        self.client: ShardClient | None = None
        self.generated: dict[str, int] = {}

    def _client(self) -> ShardClient:
        if self.client is None:
            raise RuntimeError("not connected")
        return self.client

    async def hello(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return {"sdk": "python", "version": __version__, "protocol": PROTOCOL_VERSION}

    async def connect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        client = ShardClient(
            cmd["url"],
            shard=cmd["shard"],
            token=cmd["token"],
            tick_ms=int(cmd.get("tick_ms", 100)),
            heartbeat_ms=int(cmd.get("heartbeat_ms", 1000)),
            max_pending=int(cmd.get("max_pending", 2**40)),
        )
        self.client = client
        await client.start()
        await client.wait_connected(float(cmd.get("timeout_ms", 10_000)) / 1000)
        return {"epoch": client.epoch}

    async def hit(self, cmd: dict[str, Any]) -> dict[str, Any]:
        client, boss = self._client(), cmd["boss"]
        amount, count = int(cmd["amount"]), int(cmd.get("count", 1))
        done = 0
        try:
            for _ in range(count):
                client.hit(boss, amount, player=cmd.get("player"))
                done += 1
        except BufferFull:
            return {"hits": done, "error": "buffer_full"}
        finally:
            self.generated[boss] = self.generated.get(boss, 0) + done * amount
        return {"hits": done}

    async def flush(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return {"flushed": await self._client().flush(float(cmd.get("timeout_ms", 10_000)) / 1000)}

    async def wait_acked(self, cmd: dict[str, Any]) -> dict[str, Any]:
        client = self._client()
        deadline = time.monotonic() + float(cmd.get("timeout_ms", 10_000)) / 1000
        while client.stats.acked < int(cmd["amount"]) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return {"acked": client.stats.acked, "reached": client.stats.acked >= int(cmd["amount"])}

    async def wait_connected(self, cmd: dict[str, Any]) -> dict[str, Any]:
        client = self._client()
        deadline = time.monotonic() + float(cmd.get("timeout_ms", 10_000)) / 1000
        epoch = cmd.get("epoch_above")
        while time.monotonic() < deadline:
            if client.connected.is_set() and (epoch is None or (client.epoch or 0) > int(epoch)):
                return {"connected": True, "epoch": client.epoch}
            await asyncio.sleep(0.01)
        return {"connected": False, "epoch": client.epoch}

    async def heartbeat(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Heartbeat every boss at the next tick (the SDK has no public call for it)."""
        for b in self._client()._bosses.values():
            b.last_heartbeat = 0.0
        return {}

    async def stats(self, cmd: dict[str, Any]) -> dict[str, Any]:
        client = self._client()
        s = client.stats
        bosses = client._bosses
        return {
            "epoch": client.epoch,
            "connected": client.connected.is_set(),
            "sent": s.sent,
            "resent": s.resent,
            "acked": s.acked,
            "duplicates": s.duplicates,
            "fences": s.fences,
            "connects": s.connects,
            "errors": dict(s.errors),
            "generated": dict(self.generated),
            "unacked": {slug: b.buffer.unacked for slug, b in bosses.items()},
            "dropped": {slug: b.buffer.dropped for slug, b in bosses.items()},
            "replayed": sum(b.buffer.replayed for b in bosses.values()),
            "kept": sum(len(b.buffer.kept) for b in bosses.values()),
        }

    async def bye(self, cmd: dict[str, Any]) -> dict[str, Any]:
        client = self._client()
        flushed = await client.stop(timeout_s=float(cmd.get("timeout_ms", 10_000)) / 1000)
        return {"flushed": flushed, "left": client.left}

    async def crash(self, cmd: dict[str, Any]) -> dict[str, Any]:
        _answer({"id": cmd.get("id"), "ok": True})
        os._exit(0)  # no goodbye, no flush: the platform must find out on its own

    async def sign_ticket(self, cmd: dict[str, Any]) -> dict[str, Any]:
        ticket = player_ticket_sign(
            secret=cmd["secret"],
            key_id=cmd["key_id"],
            player=cmd["player"],
            ttl_s=int(cmd["ttl_s"]),
            shard=cmd.get("shard"),
            boss=cmd.get("boss"),
            now_s=float(cmd["now_s"]),
        )
        return {"ticket": ticket}

    async def verify_webhook(self, cmd: dict[str, Any]) -> dict[str, Any]:
        try:
            body = webhook_verify(
                secret=cmd["secret"],
                body=cmd["body"].encode("utf-8"),
                timestamp=cmd["timestamp"],
                signature=cmd["signature"],
                tolerance_s=int(cmd.get("tolerance_s", 300)),
                now_s=float(cmd["now_s"]),
            )
        except WebhookVerificationError as err:
            return {"valid": False, "code": err.code}
        return {"valid": True, "body": body}


def _answer(reply: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(reply, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def main() -> None:
    driver = Driver()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        name = cmd.get("cmd", "")
        if name == "quit":
            break
        handler = getattr(driver, name, None) if not name.startswith("_") else None
        if handler is None:
            _answer({"id": cmd.get("id"), "ok": False, "error": "unsupported"})
            continue
        try:
            reply = {"id": cmd.get("id"), "ok": True, **await handler(cmd)}
        except Exception as exc:
            reply = {"id": cmd.get("id"), "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        _answer(reply)
    if driver.client is not None and not driver.client._stopping:
        await driver.client.stop(flush=False)


if __name__ == "__main__":
    asyncio.run(main())
