"""A toy game server acting as a shard: players hit the World Boss, the SDK does the rest.

Needs only the SDK (``pip install ./sdk``; ``make install`` puts it in ``.venv``). Run it
against a platform with a shard token: ``manage.py shard_token <key>`` creates the shard (or
rotates its token) and prints the token (``make demo`` makes its own shards' tokens and does
not print them):

    python examples/game_server.py --url ws://127.0.0.1:8000 --shard eu-1 --token <TOKEN> \
        --boss <slug> --players 200 --seconds 30

Every game tick (20 ms) each player may swing; ``hit()`` is a dictionary update, so the game
loop never waits for the network. Once a second it prints the truth (from the state socket),
the predicted HP (truth minus what this shard has not had acknowledged) and the SDK's
counters. Ctrl-C or the end of ``--seconds`` flushes what is held and exits.

The last line it prints is one JSON object (``dealt``, ``refused``, ``acked``, ``flushed``,
``epoch``, ``resent``, ``duplicates``, ``errors``, ``left``), for scripts that run it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

from worldboss_sdk import BufferFull, ShardClient
from worldboss_sdk.protocol import ENDED_STATUSES

GAME_TICK_S = 0.02


async def play(args: argparse.Namespace) -> dict[str, object]:
    """Run the game loop for ``args.seconds``, then flush; returns the final summary."""
    client = ShardClient(args.url, shard=args.shard, token=args.token, tick_ms=args.tick_ms)
    await client.start()
    client.watch(args.boss)
    rng = random.Random(args.seed)
    players = [f"player-{i}" for i in range(args.players)]
    dealt = refused = 0
    end = time.monotonic() + args.seconds
    next_report = time.monotonic() + 1
    try:
        while time.monotonic() < end:
            for player in players:  # the game's own loop: pure memory work
                if rng.random() < args.swing_chance:
                    damage = rng.randint(50, 150)
                    try:
                        client.hit(args.boss, damage, player=player)
                        dealt += damage
                    except BufferFull:
                        refused += damage  # the platform has been away long enough to fill it
            if time.monotonic() >= next_report:
                next_report += 1
                truth = client.state(args.boss)
                print(
                    f"truth hp={truth['hp'] if truth else '?'} v={truth['version'] if truth else '?'} "
                    f"status={truth['status'] if truth else '?'} | predicted={client.predicted_hp(args.boss)} "
                    f"| unacked={client.unacked(args.boss)} epoch={client.epoch} "
                    f"acked={client.stats.acked} resent={client.stats.resent} dup={client.stats.duplicates} "
                    f"errors={client.stats.errors}",
                    flush=True,
                )
                if truth and truth["status"] in ENDED_STATUSES:
                    break
            await asyncio.sleep(GAME_TICK_S)
    finally:
        flushed = await client.stop(timeout_s=10)
        # Damage dealt after the boss was over is dropped by the SDK (the platform refuses it):
        # never applied, so neither acked nor waiting. Anything else not acked was still held.
        rest = max(0, dealt - client.stats.acked)
        if not rest:
            why = "nothing left over"
        elif flushed:
            why = f"{rest} dealt after the boss was over, dropped (never applied)"
        else:
            why = f"{rest} not acknowledged (still held when the client stopped)"
        print(
            f"dealt {dealt} (refused {refused}); acked {client.stats.acked}; {why}; "
            f"everything sent was acknowledged: {flushed}",
            flush=True,
        )
    return {
        "dealt": dealt,
        "refused": refused,
        "acked": client.stats.acked,
        "flushed": flushed,
        "epoch": client.epoch,
        "resent": client.stats.resent,
        "duplicates": client.stats.duplicates,
        "errors": client.stats.errors,
        "left": client.left is not None,  # the platform confirmed the clean goodbye
    }


def main() -> None:
    """Parse the command line, play, and print the summary as the last line (JSON)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8000")
    parser.add_argument("--shard", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--boss", required=True, help="the boss's slug")
    parser.add_argument("--players", type=int, default=100)
    parser.add_argument("--swing-chance", type=float, default=0.05, help="per player per 20 ms game tick")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--tick-ms", type=int, default=100, help="shard tick (one delta per boss per tick)")
    parser.add_argument("--seed", type=int, default=1)
    try:
        summary = asyncio.run(play(parser.parse_args()))
    except KeyboardInterrupt:
        return
    print(json.dumps(summary, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
