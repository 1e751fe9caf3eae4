"""A game server running the real SDK (sdk/worldboss_sdk/client.py) as its own process, for fault tests.

    python -m tests.faults.sdk_proc URL SHARD TOKEN BOSS MODE

MODE ``hold``: hit 10 x 30 and flush (prints ``FLUSHED``); on SIGUSR1 (the test has paused
the boss, so deltas are refused while heartbeats still report) hit 10 x 45, wait for a few
heartbeats and print ``HOLDING {"unacked": ...}``; then idle until killed.

MODE ``run``: hit every 5 ms (7 damage) until SIGUSR1, then flush and print
``DONE {"generated", "dropped", "fences", "acked"}`` (``dropped``: what fence settlements
took out of the buffer, see sdk/worldboss_sdk/buffer.py).

MODE ``players``: hit every 5 ms (7 damage) for five players ``<shard>-p0`` .. ``-p4`` in
turn, print ``PROGRESS {"t", "last_ack_t", "acked", "connects", "fences", "longest_gap_s",
"epoch"}`` every 100 ms (``longest_gap_s``: the longest time so far without a new ack,
sampled every 10 ms; ``t``, ``last_ack_t``: ``time.monotonic()``, the clock of every process
on the machine);
SIGUSR2 drops the socket (as a network failure would: the SDK reconnects and resumes);
SIGUSR1 flushes and prints ``DONE`` with the same figures plus ``generated``, ``per_player``
(hits made while the boss was not over: after its end a hit is a no-op), ``dropped`` (what
the buffer gave up: fence settlements, held damage of a boss that is over) and ``ended``.

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
    if mode == "players":
        await players(client, shard, boss, go)
        return
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


async def players(client, shard: str, boss: str, go: asyncio.Event) -> None:
    """The ``players`` mode (see the module docstring)."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR2, client.drop_connection)
    per_player: dict[str, int] = {}
    watch = {"acked": -1, "since": loop.time(), "longest": 0.0}

    def figures() -> dict:
        return {
            "t": round(loop.time(), 3),  # time.monotonic(): one clock for every process here
            "last_ack_t": round(watch["since"], 3),
            "acked": client.stats.acked,
            "connects": client.stats.connects,
            "fences": client.stats.fences,
            "longest_gap_s": round(watch["longest"], 3),
            "epoch": client.epoch,
        }

    async def sample() -> None:
        while True:
            now = loop.time()
            if client.stats.acked != watch["acked"]:
                watch["acked"], watch["since"] = client.stats.acked, now
            watch["longest"] = max(watch["longest"], now - watch["since"])
            await asyncio.sleep(0.01)

    async def report() -> None:
        while True:
            say("PROGRESS", **figures())
            await asyncio.sleep(0.1)

    tasks = [asyncio.create_task(sample()), asyncio.create_task(report())]
    i = 0
    while not go.is_set():
        player = f"{shard}-p{i % 5}"
        state = client._bosses.get(boss)
        if state is None or not state.ended:  # after the end a hit is a no-op
            client.hit(boss, 7, player=player)
            per_player[player] = per_player.get(player, 0) + 7
        i += 1
        await asyncio.sleep(0.005)
    for task in tasks:
        task.cancel()
    flushed = await client.stop(timeout_s=30)
    b = client._bosses[boss]
    say(
        "DONE",
        generated=sum(per_player.values()),
        per_player=per_player,
        flushed=flushed,
        dropped=b.buffer.dropped,
        ended=b.ended,
        **figures(),
    )


if __name__ == "__main__":
    asyncio.run(main())
