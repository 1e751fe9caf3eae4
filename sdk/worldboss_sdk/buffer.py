"""The local shard buffer: hits summed in memory, one delta per tick, exactly-once bookkeeping.

Shared by the game-server SDK (worldboss_sdk.client) and the platform-hosted shard gateway
(bosses/hosted.py), so both follow the same rules (docs/sdk.md):

* :meth:`LocalBuffer.add` is O(1): a hit adds to a running total (and to its player's sum);
* :meth:`LocalBuffer.take` returns the delta to send this tick: the in-flight one again
  (same seq, same amount) until it is acknowledged, else a new one from what is pending;
* :meth:`LocalBuffer.fenced` applies a ``fenced`` error's settlement: an in-flight delta with
  ``seq <= last_seq`` was accepted and is dropped; ``settled`` (what the crash saga applied or
  discarded) is dropped from what is still held; seq restarts at 1 for the next epoch;
* :meth:`LocalBuffer.held_parts` is the per-player part of what a heartbeat reports held
  (pending and queued re-sends; the in-flight delta's apart): a fair crash saga credits it to
  those players (docs/sdk.md); :meth:`LocalBuffer.held_breakdown` is the older merged form;
* the buffer is bounded: past ``max_pending`` damage held (pending + in flight) or
  ``max_players`` players waiting it raises
  :class:`BufferFull` (never a silent drop);
* acknowledged deltas are **kept** until the platform reports them durable (``durable_seq``
  in ``heartbeat_ack``: in its SQL archive) once it has reported durability at all; if the
  authority comes back behind what it acknowledged (a Redis rollback or loss), it answers
  ``seq_gap`` with its ``last_seq`` and :meth:`LocalBuffer.realign` re-sends the kept deltas
  after it under the same seqs, so every acknowledged hit lands exactly once
  (docs/durability.md).

No Django import here: the SDK runs inside game servers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from worldboss_sdk.errors import BufferFull
from worldboss_sdk.protocol import MAX_BREAKDOWN_ENTRIES, MAX_DELTA_AMOUNT

__all__ = ["DEFAULT_MAX_PLAYERS", "MAX_DELTA_AMOUNT", "BufferFull", "Delta", "LocalBuffer"]

DEFAULT_MAX_PLAYERS = 50_000
# Acknowledged deltas kept for a re-send (about 3 minutes of 100 ms ticks): the platform's
# archive makes them durable every couple of seconds, so this is only reached when it stops
# reporting; the oldest are then given up (counted in ``LocalBuffer.unkept``).
DEFAULT_MAX_KEPT = 2_000


@dataclass(frozen=True)
class Delta:
    """One shard tick's damage: ``damage {boss, amount, seq, breakdown}``."""

    seq: int
    amount: int
    breakdown: dict[str, int] = field(default_factory=dict)


class LocalBuffer:
    """One boss's buffer inside one shard session (see the module docstring)."""

    __slots__ = (
        "dropped",
        "inflight",
        "keeps",
        "kept",
        "max_kept",
        "max_pending",
        "max_players",
        "next_seq",
        "pending",
        "players",
        "queued",
        "replayed",
        "reported",
        "unattributed",
        "unkept",
    )

    def __init__(
        self,
        *,
        max_pending: int = MAX_DELTA_AMOUNT,
        max_players: int = DEFAULT_MAX_PLAYERS,
        max_kept: int = DEFAULT_MAX_KEPT,
    ):
        self.pending = 0  # damage not in any delta yet
        self.unattributed = 0  # part of ``pending`` with no player
        self.players: dict[str, int] = {}  # player -> pending damage (rest of ``pending``)
        self.inflight: Delta | None = None  # sent, not acknowledged
        self.next_seq = 1
        self.max_pending = min(max_pending, MAX_DELTA_AMOUNT)
        self.max_players = max_players
        self.dropped = 0  # damage given up on (boss over, or settled)
        self.kept: list[Delta] = []  # acknowledged, not yet reported durable (seq order)
        self.keeps = False  # the platform reports durability: keep acked deltas until then
        self.max_kept = max_kept
        self.queued: list[Delta] = []  # kept deltas to re-send after the in-flight one
        self.replayed = 0  # deltas re-sent because the authority came back behind them
        self.unkept = 0  # acked deltas given up past ``max_kept`` (no longer re-sendable)
        # The last heartbeat's breakdown less the deltas accepted since (the platform's rule,
        # ingest.lua): what a fair crash saga would credit to players now.
        self.reported: dict[str, int] = {}

    def add(self, amount: int, player: str | None = None) -> None:
        """Add one hit (O(1)); :class:`BufferFull` past the bound, nothing added then."""
        held = self.pending + (self.inflight.amount if self.inflight else 0)
        if held + amount > self.max_pending:
            raise BufferFull(
                f"local buffer holds {held} damage; the bound is {self.max_pending} "
                "(the platform is not taking deltas)",
                pending=held,
            )
        if player is None:
            self.unattributed += amount
        else:
            current = self.players.get(player)
            if current is None:
                if len(self.players) >= self.max_players:
                    raise BufferFull(
                        f"local buffer holds {len(self.players)} players; the bound is {self.max_players}",
                        pending=self.pending,
                    )
                self.players[player] = amount
            else:
                self.players[player] = current + amount
        self.pending += amount

    @property
    def unacked(self) -> int:
        """Everything held: pending, the in-flight delta and those queued for a re-send."""
        return self.waiting + (self.inflight.amount if self.inflight else 0)

    @property
    def waiting(self) -> int:
        """Damage in no in-flight delta: pending plus the re-sends queued behind the in-flight
        one (what a heartbeat reports as ``pending``; the platform accepts at most one delta's
        worth, ``MAX_DELTA_AMOUNT``, which is also the most a crash saga settles for a session)."""
        return min(self.pending + sum(d.amount for d in self.queued), MAX_DELTA_AMOUNT)

    def held_breakdown(self) -> dict[str, int]:
        """The per-player part of what a heartbeat reports held (``waiting`` + the in-flight
        amount): at most ``MAX_BREAKDOWN_ENTRIES`` players, summing to at most that. Call it
        to send a heartbeat: it is remembered as :attr:`reported`.

        Pending players come first, then the queued re-sends', then the in-flight delta's:
        the platform cuts a breakdown to fit from its end, and when the in-flight delta was
        accepted just before the heartbeat, its players (already credited) are the ones cut.
        Unattributed damage and players past the bound stay the shard's only.
        """
        inflight = self.inflight
        held = self.waiting + (inflight.amount if inflight else 0)
        merged: dict[str, int] = dict(itertools.islice(self.players.items(), MAX_BREAKDOWN_ENTRIES))
        for source in [*(d.breakdown for d in self.queued), *([inflight.breakdown] if inflight else [])]:
            for player, dmg in source.items():
                if player in merged:
                    merged[player] += dmg
                elif len(merged) < MAX_BREAKDOWN_ENTRIES:
                    merged[player] = dmg
        out: dict[str, int] = {}
        total = 0
        for player, dmg in merged.items():
            if total >= held:
                break
            part = min(dmg, held - total)
            if part > 0:
                out[player] = part
                total += part
        self.reported = dict(out)
        return out

    def held_parts(self) -> tuple[dict[str, int], dict[str, int]]:
        """The per-player parts of what a heartbeat reports held, kept apart so the platform
        attributes them exactly: who holds ``waiting`` (pending players first, then the queued
        re-sends', at most ``MAX_BREAKDOWN_ENTRIES`` players, summing to at most ``waiting``)
        and who the in-flight delta carries (its own breakdown). The platform counts the
        in-flight part only if that delta was not accepted yet (heartbeat.lua), so an
        acceptance racing the heartbeat never moves damage between players. Call it to send a
        heartbeat: their merge is remembered as :attr:`reported`. Unattributed damage and
        players past the bound stay the shard's only.
        """
        waiting = self.waiting
        part: dict[str, int] = dict(itertools.islice(self.players.items(), MAX_BREAKDOWN_ENTRIES))
        for delta in self.queued:
            for player, dmg in delta.breakdown.items():
                if player in part:
                    part[player] += dmg
                elif len(part) < MAX_BREAKDOWN_ENTRIES:
                    part[player] = dmg
        out = _fit(part, waiting)
        flight = dict(self.inflight.breakdown) if self.inflight else {}
        reported = dict(out)
        for player, dmg in flight.items():
            reported[player] = reported.get(player, 0) + dmg
        self.reported = reported
        return out, flight

    def _unreport(self, breakdown: dict[str, int]) -> None:
        """An accepted delta's players no longer hold that damage (the platform subtracts
        it from the stored breakdown the same way)."""
        if not self.reported:
            return
        for player, dmg in breakdown.items():
            left = self.reported.get(player, 0) - dmg
            if left > 0:
                self.reported[player] = left
            else:
                self.reported.pop(player, None)

    def take(self) -> Delta | None:
        """The delta to send now: the in-flight one again, else a new one (or None)."""
        if self.inflight is not None:
            return self.inflight
        if self.pending <= 0:
            return None
        if len(self.players) <= MAX_BREAKDOWN_ENTRIES:
            breakdown, self.players = self.players, {}
        else:  # more players than one delta may name: the rest wait for the next tick
            breakdown = dict(itertools.islice(self.players.items(), MAX_BREAKDOWN_ENTRIES))
            for player in breakdown:
                del self.players[player]
        amount = self.unattributed + sum(breakdown.values())
        self.unattributed = 0
        self.pending -= amount
        self.inflight = Delta(self.next_seq, amount, breakdown)
        self.next_seq += 1
        return self.inflight

    def acked(self, seq: int) -> bool:
        """Mark the in-flight delta accepted if ``seq`` is its seq (or older: a late ack).

        It is kept until reported durable (when the platform reports durability), and the
        next queued re-send, if any, becomes the in-flight delta.
        """
        if self.inflight is not None and seq >= self.inflight.seq:
            self._unreport(self.inflight.breakdown)
            if self.keeps:
                self.kept.append(self.inflight)
                if len(self.kept) > self.max_kept:
                    self.unkept += 1
                    del self.kept[0]
            self.inflight = self.queued.pop(0) if self.queued else None
            return True
        return False

    def behind(self, last_seq: int) -> bool:
        """A heartbeat says the platform's last seq is ``last_seq``: if it lacks acknowledged
        deltas we kept (a rollback), queue them for a re-send now rather than at the next
        delta. Returns whether it did."""
        if self.kept and self.kept[-1].seq > last_seq:
            before = self.replayed
            self.realign(last_seq)
            return self.replayed > before
        return False

    def durable(self, seq: int) -> None:
        """The platform holds every seq up to ``seq`` durably: stop keeping those."""
        self.keeps = True
        if self.kept and self.kept[0].seq <= seq:
            self.kept = [d for d in self.kept if d.seq > seq]

    def realign(self, last_seq: int) -> None:
        """The platform's last seq is behind ours.

        If we kept the acknowledged deltas right after ``last_seq``, the authority came back
        behind what it acknowledged (a rollback or a restore from the archive): they are
        re-sent first, under their own seqs, then the in-flight one. Otherwise (the boss was
        reset: its dedupe state is gone) an in-flight delta was never accepted under the new
        state, so it goes out again as ``last_seq + 1`` and numbering continues from there.
        """
        replay = [d for d in self.kept if d.seq > last_seq]
        if replay:
            if replay[0].seq == last_seq + 1:
                self.kept = [d for d in self.kept if d.seq <= last_seq]
                chain = [*replay, *([self.inflight] if self.inflight else []), *self.queued]
                self.inflight, self.queued = chain[0], chain[1:]
                self.replayed += len(replay)
            # Else the platform lacks seqs we stopped keeping because it had reported them
            # durable: it is behind its own archive, and restoring from it brings it forward.
            # Renumbering now would apply those seqs twice: wait for the restore.
            return
        if self.inflight is not None:
            if last_seq >= self.inflight.seq:  # it had landed: only the ack was lost
                self.inflight = None
            else:
                self.inflight = Delta(last_seq + 1, self.inflight.amount, self.inflight.breakdown)
                self.next_seq = last_seq + 2
                return
        self.next_seq = last_seq + 1

    def fenced(self, *, last_seq: int, settled: int, credited: dict[str, int] | None = None) -> int:
        """Apply a fence settlement and start a new epoch's numbering; returns what remains held.

        ``credited`` is who a fair settlement credited (the ``fenced`` error reports it); without
        it the buffer assumes what it last reported (:attr:`reported`, less accepted deltas)."""
        if self.inflight is not None:
            if self.inflight.seq <= last_seq:
                self._unreport(self.inflight.breakdown)
                self.inflight = None  # it was accepted before the fence
            else:  # never accepted: back to pending, to go out under the new epoch
                self.unattributed += self.inflight.amount - sum(self.inflight.breakdown.values())
                for player, dmg in self.inflight.breakdown.items():
                    self.players[player] = self.players.get(player, 0) + dmg
                self.pending += self.inflight.amount
                self.inflight = None
        self._requeue()  # reported as pending by heartbeats: part of what ``settled`` covers
        # A fair saga credited the reported players: their damage goes first, so what is sent
        # again under the new epoch is not credited to them a second time.
        self._drop(settled, first=self.reported if credited is None else credited)
        self.reported = {}
        self.kept = []  # accepted under the fenced epoch: nothing to re-send there any more
        self.next_seq = 1
        return self.pending

    def drop_all(self) -> int:
        """Give up everything held (the boss is over); returns how much."""
        amount = self.unacked
        in_deltas = sum(d.amount for d in self.queued) + (self.inflight.amount if self.inflight else 0)
        self.inflight = None
        self.queued, self.kept = [], []
        self._drop(self.pending)
        self.dropped += in_deltas  # the in-flight delta and the queued re-sends are given up too
        self.reported = {}
        return amount

    def _requeue(self) -> None:
        """Queued re-sends were never accepted under this epoch: back to pending."""
        for delta in self.queued:
            self.unattributed += delta.amount - sum(delta.breakdown.values())
            for player, dmg in delta.breakdown.items():
                self.players[player] = self.players.get(player, 0) + dmg
            self.pending += delta.amount
        self.queued = []

    def _drop(self, amount: int, first: dict[str, int] | None = None) -> None:
        amount = max(0, min(amount, self.pending))
        self.dropped += amount
        self.pending -= amount
        for player, credited in (first or {}).items():
            if amount <= 0:
                break
            take = min(amount, credited, self.players.get(player, 0))
            if take > 0:
                self.players[player] -= take
                amount -= take
                if self.players[player] == 0:
                    del self.players[player]
        take = min(amount, self.unattributed)
        self.unattributed -= take
        amount -= take
        for player in list(self.players):
            if amount <= 0:
                break
            take = min(amount, self.players[player])
            self.players[player] -= take
            amount -= take
            if self.players[player] == 0:
                del self.players[player]


def _fit(breakdown: dict[str, int], limit: int) -> dict[str, int]:
    """``breakdown`` cut to sum at most ``limit``: entries in order, the one crossing it trimmed."""
    out: dict[str, int] = {}
    total = 0
    for player, dmg in breakdown.items():
        if total >= limit:
            break
        part = min(dmg, limit - total)
        if part > 0:
            out[player] = part
            total += part
    return out
