"""A game server running the real SDK (sdk/worldboss_sdk/client.py) as its own process, for fault tests.

    python -m tests.faults.sdk_proc URL SHARD TOKEN BOSS MODE

MODE ``hold``: hit 10 x 30 and flush (prints ``FLUSHED``); on SIGUSR1 (the test has paused
the boss, so deltas are refused while heartbeats still report) hit 10 x 45, wait for a few
heartbeats and print ``HOLDING {"unacked": ...}``; then idle until killed.

MODE ``run``: hit every 5 ms (7 damage) until SIGUSR1, then flush and print
``DONE {"generated", "dropped", "fences", "acked"}`` (``dropped``: what fence settlements
took out of the buffer, see sdk/worldboss_sdk/buffer.py).

Every line it prints is ``WORD {json}``. Tick 50 ms, heartbeat 100 ms.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys


def say(word: str, **data) -> None:
    print(word, json.dumps(data), flush=True)


async def main() -> None:
    from worldboss_sdk.client import ShardClient

    url, shard, token, boss, mode = sys.argv[1:6]
    client = ShardClient(url, shard=shard, token=token, tick_ms=50, heartbeat_ms=100)
    go = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, go.set)
    await client.start()
    await client.wait_connected()
    say("CONNECTED", epoch=client.epoch)
    if mode == "hold":
        for _ in range(10):
            client.hit(boss, 30, player="alice")
        assert await client.flush(10)
        say("FLUSHED", acked=client.stats.acked, epoch=client.epoch)
        await go.wait()
        for _ in range(10):
            client.hit(boss, 45, player="bob")
        await asyncio.sleep(0.5)  # several heartbeats report what it holds
        say("HOLDING", unacked=client.unacked(boss), epoch=client.epoch)
        await asyncio.Event().wait()
    generated = 0
    while not go.is_set():
        client.hit(boss, 7)
        generated += 7
        await asyncio.sleep(0.005)
    flushed = await client.stop(timeout_s=30)  # bounded; a loaded CI machine needs the slack
    b = client._bosses[boss]
    say(
        "DONE",
        generated=generated,
        dropped=b.buffer.dropped,
        fences=client.stats.fences,
        acked=client.stats.acked,
        replayed=b.buffer.replayed,
        errors=client.stats.errors,
        flushed=flushed,
        epoch=client.epoch,
    )


if __name__ == "__main__":
    asyncio.run(main())
