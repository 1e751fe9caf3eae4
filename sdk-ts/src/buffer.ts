/**
 * The local shard buffer: hits summed in memory, one delta per tick, exactly-once bookkeeping.
 *
 * The same rules as the Python SDK's `LocalBuffer` (sdk/worldboss_sdk/buffer.py, docs/sdk.md):
 * `add` is O(1); `take` returns the in-flight delta again (same seq) until it is acknowledged;
 * `fenced` applies a fence's settlement; acknowledged deltas are kept until reported durable
 * and re-sent under their own seqs when the authority comes back behind them (`realign`).
 * Amounts stay below 2^53: whole numbers are exact in a JavaScript number.
 */
import { MAX_BREAKDOWN_ENTRIES, MAX_DELTA_AMOUNT } from "./protocol.js";

export const DEFAULT_MAX_PLAYERS = 50_000;
export const DEFAULT_MAX_KEPT = 2_000;

/** The buffer refused a hit: the platform has been away long enough to fill it. */
export class BufferFull extends Error {
  readonly code = "buffer_full";
  constructor(
    message: string,
    readonly pending: number,
  ) {
    super(message);
    this.name = "BufferFull";
  }
}

/** One shard tick's damage: `damage {boss, seq, amount, breakdown}`. */
export interface Delta {
  readonly seq: number;
  readonly amount: number;
  readonly breakdown: ReadonlyMap<string, number>;
}

export interface BufferOptions {
  maxPending?: number;
  maxPlayers?: number;
  maxKept?: number;
}

function sum(values: Iterable<number>): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}

export class LocalBuffer {
  pending = 0; // damage in no delta yet
  unattributed = 0; // the part of `pending` with no player
  players = new Map<string, number>(); // player -> pending damage
  inflight: Delta | null = null;
  nextSeq = 1;
  dropped = 0; // damage given up on (boss over, or settled)
  kept: Delta[] = []; // acknowledged, not yet reported durable (seq order)
  keeps = false; // the platform reports durability: keep acked deltas until then
  queued: Delta[] = []; // kept deltas to re-send after the in-flight one
  replayed = 0;
  unkept = 0;
  reported = new Map<string, number>(); // the last heartbeat's breakdown less accepted deltas
  readonly maxPending: number;
  readonly maxPlayers: number;
  readonly maxKept: number;

  constructor(options: BufferOptions = {}) {
    this.maxPending = Math.min(options.maxPending ?? MAX_DELTA_AMOUNT, MAX_DELTA_AMOUNT);
    this.maxPlayers = options.maxPlayers ?? DEFAULT_MAX_PLAYERS;
    this.maxKept = options.maxKept ?? DEFAULT_MAX_KEPT;
  }

  /** Add one hit (O(1)); BufferFull past the bound, nothing added then. */
  add(amount: number, player?: string | null): void {
    const held = this.pending + (this.inflight?.amount ?? 0);
    if (held + amount > this.maxPending) {
      throw new BufferFull(
        `local buffer holds ${held} damage; the bound is ${this.maxPending} (the platform is not taking deltas)`,
        held,
      );
    }
    if (player == null) {
      this.unattributed += amount;
    } else {
      const current = this.players.get(player);
      if (current === undefined) {
        if (this.players.size >= this.maxPlayers) {
          throw new BufferFull(
            `local buffer holds ${this.players.size} players; the bound is ${this.maxPlayers}`,
            this.pending,
          );
        }
        this.players.set(player, amount);
      } else {
        this.players.set(player, current + amount);
      }
    }
    this.pending += amount;
  }

  /** Everything held: pending, the in-flight delta and the queued re-sends. */
  get unacked(): number {
    return this.waiting + (this.inflight?.amount ?? 0);
  }

  /** Damage in no in-flight delta (what a heartbeat reports as `pending`). */
  get waiting(): number {
    return Math.min(this.pending + sum(this.queued.map((d) => d.amount)), MAX_DELTA_AMOUNT);
  }

  /** Who holds what a heartbeat reports (pending players first, then queued, then in-flight);
   * remembered as `reported`. */
  heldBreakdown(): Map<string, number> {
    const inflight = this.inflight;
    const held = this.waiting + (inflight?.amount ?? 0);
    const merged = new Map<string, number>();
    for (const [player, dmg] of this.players) {
      if (merged.size >= MAX_BREAKDOWN_ENTRIES) break;
      merged.set(player, dmg);
    }
    const sources = [...this.queued.map((d) => d.breakdown), ...(inflight ? [inflight.breakdown] : [])];
    for (const source of sources) {
      for (const [player, dmg] of source) {
        const current = merged.get(player);
        if (current !== undefined) merged.set(player, current + dmg);
        else if (merged.size < MAX_BREAKDOWN_ENTRIES) merged.set(player, dmg);
      }
    }
    const out = new Map<string, number>();
    let total = 0;
    for (const [player, dmg] of merged) {
      if (total >= held) break;
      const part = Math.min(dmg, held - total);
      if (part > 0) {
        out.set(player, part);
        total += part;
      }
    }
    this.reported = new Map(out);
    return out;
  }

  /** The per-player parts of what a heartbeat reports held, kept apart so the platform
   * attributes them exactly: who holds `waiting` (pending players first, then the queued
   * re-sends', at most MAX_BREAKDOWN_ENTRIES players, summing to at most `waiting`) and who the
   * in-flight delta carries (its own breakdown; the platform counts it only while that delta
   * is not accepted). Their merge is remembered as `reported`. */
  heldParts(): [Map<string, number>, Map<string, number>] {
    const part = new Map<string, number>();
    for (const [player, dmg] of this.players) {
      if (part.size >= MAX_BREAKDOWN_ENTRIES) break;
      part.set(player, dmg);
    }
    for (const delta of this.queued) {
      for (const [player, dmg] of delta.breakdown) {
        const current = part.get(player);
        if (current !== undefined) part.set(player, current + dmg);
        else if (part.size < MAX_BREAKDOWN_ENTRIES) part.set(player, dmg);
      }
    }
    const out = fit(part, this.waiting);
    const flight = new Map(this.inflight?.breakdown ?? []);
    const reported = new Map(out);
    for (const [player, dmg] of flight) reported.set(player, (reported.get(player) ?? 0) + dmg);
    this.reported = reported;
    return [out, flight];
  }

  private unreport(breakdown: ReadonlyMap<string, number>): void {
    if (this.reported.size === 0) return;
    for (const [player, dmg] of breakdown) {
      const left = (this.reported.get(player) ?? 0) - dmg;
      if (left > 0) this.reported.set(player, left);
      else this.reported.delete(player);
    }
  }

  /** The delta to send now: the in-flight one again, else a new one (or null). */
  take(): Delta | null {
    if (this.inflight !== null) return this.inflight;
    if (this.pending <= 0) return null;
    let breakdown: Map<string, number>;
    if (this.players.size <= MAX_BREAKDOWN_ENTRIES) {
      breakdown = this.players;
      this.players = new Map();
    } else {
      breakdown = new Map();
      for (const [player, dmg] of this.players) {
        if (breakdown.size >= MAX_BREAKDOWN_ENTRIES) break;
        breakdown.set(player, dmg);
      }
      for (const player of breakdown.keys()) this.players.delete(player);
    }
    const amount = this.unattributed + sum(breakdown.values());
    this.unattributed = 0;
    this.pending -= amount;
    this.inflight = { seq: this.nextSeq, amount, breakdown };
    this.nextSeq += 1;
    return this.inflight;
  }

  /** Mark the in-flight delta accepted if `seq` is its seq (or later). */
  acked(seq: number): boolean {
    if (this.inflight !== null && seq >= this.inflight.seq) {
      this.unreport(this.inflight.breakdown);
      if (this.keeps) {
        this.kept.push(this.inflight);
        if (this.kept.length > this.maxKept) {
          this.unkept += 1;
          this.kept.shift();
        }
      }
      this.inflight = this.queued.shift() ?? null;
      return true;
    }
    return false;
  }

  /** A heartbeat's `last_seq` below kept seqs: queue them for a re-send now. */
  behind(lastSeq: number): boolean {
    const last = this.kept[this.kept.length - 1];
    if (last !== undefined && last.seq > lastSeq) {
      const before = this.replayed;
      this.realign(lastSeq);
      return this.replayed > before;
    }
    return false;
  }

  /** The platform holds every seq up to `seq` durably: stop keeping those. */
  durable(seq: number): void {
    this.keeps = true;
    const first = this.kept[0];
    if (first !== undefined && first.seq <= seq) this.kept = this.kept.filter((d) => d.seq > seq);
  }

  /** The platform's last seq is behind ours: re-send kept deltas after it, or renumber. */
  realign(lastSeq: number): void {
    const replay = this.kept.filter((d) => d.seq > lastSeq);
    if (replay.length > 0) {
      if (replay[0]!.seq === lastSeq + 1) {
        this.kept = this.kept.filter((d) => d.seq <= lastSeq);
        const chain = [...replay, ...(this.inflight ? [this.inflight] : []), ...this.queued];
        this.inflight = chain[0] ?? null;
        this.queued = chain.slice(1);
        this.replayed += replay.length;
      }
      return; // else: behind its own archive; the restore brings it forward
    }
    if (this.inflight !== null) {
      if (lastSeq >= this.inflight.seq) {
        this.inflight = null; // it had landed: only the ack was lost
      } else {
        this.inflight = { seq: lastSeq + 1, amount: this.inflight.amount, breakdown: this.inflight.breakdown };
        this.nextSeq = lastSeq + 2;
        return;
      }
    }
    this.nextSeq = lastSeq + 1;
  }

  /** Apply a fence's settlement and restart numbering; what remains held. `credited` is who a
   * fair settlement credited (the `fenced` error reports it); without it, what was last
   * reported (`reported`, less accepted deltas). */
  fenced(lastSeq: number, settled: number, credited?: ReadonlyMap<string, number>): number {
    if (this.inflight !== null) {
      if (this.inflight.seq <= lastSeq) {
        this.unreport(this.inflight.breakdown);
      } else {
        this.backToPending(this.inflight);
      }
      this.inflight = null;
    }
    for (const delta of this.queued) this.backToPending(delta);
    this.queued = [];
    this.drop(settled, credited ?? this.reported); // the credited players' damage goes first
    this.reported = new Map();
    this.kept = [];
    this.nextSeq = 1;
    return this.pending;
  }

  /** Give up everything held (the boss is over); how much. */
  dropAll(): number {
    const amount = this.unacked;
    const inDeltas = sum(this.queued.map((d) => d.amount)) + (this.inflight?.amount ?? 0);
    this.inflight = null;
    this.queued = [];
    this.kept = [];
    this.drop(this.pending);
    this.dropped += inDeltas; // the in-flight delta and the queued re-sends are given up too
    this.reported = new Map();
    return amount;
  }

  private backToPending(delta: Delta): void {
    this.unattributed += delta.amount - sum(delta.breakdown.values());
    for (const [player, dmg] of delta.breakdown) this.players.set(player, (this.players.get(player) ?? 0) + dmg);
    this.pending += delta.amount;
  }

  private drop(amount: number, first?: ReadonlyMap<string, number>): void {
    let left = Math.max(0, Math.min(amount, this.pending));
    this.dropped += left;
    this.pending -= left;
    const takeFrom = (player: string, most: number): void => {
      const take = Math.min(left, most, this.players.get(player) ?? 0);
      if (take > 0) {
        const rest = (this.players.get(player) ?? 0) - take;
        if (rest === 0) this.players.delete(player);
        else this.players.set(player, rest);
        left -= take;
      }
    };
    for (const [player, credited] of first ?? []) {
      if (left <= 0) break;
      takeFrom(player, credited);
    }
    const fromUnattributed = Math.min(left, this.unattributed);
    this.unattributed -= fromUnattributed;
    left -= fromUnattributed;
    for (const player of [...this.players.keys()]) {
      if (left <= 0) break;
      takeFrom(player, Infinity);
    }
  }
}

/** `breakdown` cut to sum at most `limit`: entries in order, the one crossing it trimmed. */
function fit(breakdown: ReadonlyMap<string, number>, limit: number): Map<string, number> {
  const out = new Map<string, number>();
  let total = 0;
  for (const [player, dmg] of breakdown) {
    if (total >= limit) break;
    const part = Math.min(dmg, limit - total);
    if (part > 0) {
      out.set(player, part);
      total += part;
    }
  }
  return out;
}
