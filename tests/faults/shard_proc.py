"""A game-server shard as a real process for fault tests (uses shards.services directly).

    python -m tests.faults.shard_proc hold BOSS_ID SHARD_KEY ACKED PENDING INFLIGHT
        Sends ACKED deltas of 10 (seq 1..ACKED, all accepted), then holds PENDING damage
        locally and one in-flight delta (seq ACKED+1, INFLIGHT damage) that never arrives,
        heartbeats once with both and prints ``HOLDING {...}``; then sleeps until killed.

    python -m tests.faults.shard_proc run BOSS_ID SHARD_KEY
        Loops: every tick it adds HITS x 7 damage to its buffer, sends one delta (the same seq
        again until acknowledged), adds HITS x 7 more (hits during the tick, held until the
        next delta) and heartbeats (every HB_MS, default every tick) with what it holds. On ``fenced`` it follows the
        protocol (docs/sagas.md): an in-flight delta with seq <= last_seq was accepted; what
        the saga ``settled`` is dropped from what it holds; it reconnects with a new epoch.
        On SIGUSR1 it stops hitting, flushes everything and prints ``DONE {...}`` with what
        it generated and dropped.

Every line it prints is ``WORD {json}``; timings come from env (TICK_MS, HB_MS, HITS).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def say(word: str, **data) -> None:
    print(word, json.dumps(data), flush=True)


def main() -> None:
    import django

    django.setup()
    from core.errors import AuthorityUnavailable, Fenced
    from shards.models import Shard
    from shards.services import shard_session_open
    from tests.support.authority import delta_ingest, heartbeat_record

    mode, boss_id, shard_key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    shard = Shard.objects.get(key=shard_key)
    session = shard_session_open(shard=shard)
    say("SESSION", epoch=session.epoch)

    if mode == "hold":
        acked, pending, inflight = (int(x) for x in sys.argv[4:7])
        for seq in range(1, acked + 1):
            delta_ingest(boss_id=boss_id, shard_key=shard_key, epoch=session.epoch, seq=seq, amount=10)
        heartbeat_record(
            boss_id=boss_id,
            shard_key=shard_key,
            epoch=session.epoch,
            pending=pending,
            inflight_seq=acked + 1 if inflight else 0,
            inflight_amount=inflight,
        )
        say("HOLDING", epoch=session.epoch, acked=acked * 10, pending=pending, inflight=inflight)
        while True:
            time.sleep(1)

    tick_s = int(os.environ.get("TICK_MS", "50")) / 1000
    hb_s = int(os.environ.get("HB_MS", "0")) / 1000  # 0: a heartbeat every tick
    hits = int(os.environ.get("HITS", "3"))
    finishing = []
    signal.signal(signal.SIGUSR1, lambda *_: finishing.append(True))
    epoch, seq = session.epoch, 0
    pending, inflight = 0, None  # inflight: (seq, amount)
    generated = accepted = dropped = fences = 0
    last_hb = 0.0
    while True:
        if not finishing:
            pending += hits * 7
            generated += hits * 7
        elif pending == 0 and inflight is None:
            break
        try:
            if inflight is None and pending:
                seq += 1
                inflight, pending = (seq, pending), 0
            if inflight is not None:
                delta_ingest(
                    boss_id=boss_id, shard_key=shard_key, epoch=epoch, seq=inflight[0], amount=inflight[1]
                )
                accepted += inflight[1]
                inflight = None
            if not finishing:  # hits landing during the tick: held until the next delta
                pending += hits * 7
                generated += hits * 7
            if time.monotonic() - last_hb >= hb_s:
                heartbeat_record(
                    boss_id=boss_id,
                    shard_key=shard_key,
                    epoch=epoch,
                    pending=pending,
                    inflight_seq=inflight[0] if inflight else 0,
                    inflight_amount=inflight[1] if inflight else 0,
                )
                last_hb = time.monotonic()
        except Fenced as exc:
            last_seq, settled = exc.extra["last_seq"], exc.extra["settled"]
            if inflight is not None:
                if inflight[0] <= last_seq:
                    accepted += inflight[1]  # accepted before the fence; its ack was lost
                else:
                    pending += inflight[1]
                inflight = None
            drop = min(settled, pending)
            pending -= drop
            dropped += drop
            fences += 1
            say(
                "FENCED",
                epoch=epoch,
                last_seq=last_seq,
                policy=exc.extra["policy"],
                settled=settled,
                dropped=drop,
            )
            epoch, seq = shard_session_open(shard=Shard.objects.get(key=shard_key)).epoch, 0
            say("SESSION", epoch=epoch)
        except AuthorityUnavailable:
            pass  # keep buffering; the same seq goes out again next tick
        time.sleep(tick_s)
    say("DONE", generated=generated, accepted=accepted, dropped=dropped, fences=fences, epoch=epoch)


if __name__ == "__main__":
    main()
