/**
 * The game-server client: one game server's connection to the platform as a shard.
 *
 *     const client = new ShardClient("ws://platform:8000", { shard: "eu-1", token: TOKEN });
 *     client.start();                              // returns at once; connects in the background
 *     client.hit("ragnaros", 120, "alice");        // in the game loop: O(1), no I/O, never waits
 *     await client.stop();                         // flush (bounded), then `bye`
 *
 * The same semantics as the Python SDK (sdk/worldboss_sdk/client.py, docs/sdk.md): one delta per
 * boss per tick, the same seq re-sent until acknowledged, heartbeats with what it holds and
 * who holds it, reconnects that resume the epoch, fences settled exactly (`settled` dropped,
 * then a new epoch), acknowledged deltas kept until `durable_seq` and re-sent under their own
 * seqs after a rollback, and `bye` on a clean stop. Held to the conformance kit (conformance/).
 */
import { BufferFull, DEFAULT_MAX_PLAYERS, LocalBuffer } from "./buffer.js";
import type { AuthFrame, ByeFrame, DamageFrame, HeartbeatFrame } from "./frames.js";
import {
  ENDED_STATUSES,
  ErrorCode,
  MAX_DELTA_AMOUNT,
  PERMANENT_CLOSE_CODES,
  PLAYER_ID_PATTERN,
  RESERVED_PLAYER_PREFIXES,
} from "./protocol.js";
import type { ByeAckFrame, ErrorFrame, StateFrame, WelcomeFrame } from "./protocol.js";
import { openSocket, type Socket } from "./socket.js";

export { BufferFull };

export const RECONNECT_BACKOFF_MS = [50, 100, 250, 500, 1000, 2000];
// Liveness of the shard socket (the Python SDK's): a ping every second, a link that has not
// answered within a second is dead and left at once, well inside the platform's heartbeat
// timeout (5 s by default); a close the platform does not answer within a second is given up.
export const PING_INTERVAL_MS = 1000;
export const CLOSE_TIMEOUT_MS = 1000;

export interface ShardClientOptions {
  shard: string;
  token: string;
  tickMs?: number;
  heartbeatMs?: number;
  resendMs?: number;
  maxPending?: number;
  maxPlayers?: number;
  openTimeoutMs?: number;
  /** Keepalive pings (Node); null: none, liveness is then TCP's. */
  pingIntervalMs?: number | null;
}

/** Counters for logs and tests (the Python SDK's `ClientStats`). */
export interface ClientStats {
  sent: number;
  resent: number;
  acked: number;
  duplicates: number;
  fences: number;
  connects: number;
  unanswered_closes: number; // closes this client started that the platform never answered
  errors: Record<string, number>;
}

type Frame = Record<string, unknown>;

class BossEntry {
  readonly buffer: LocalBuffer;
  sentAt = 0;
  state: StateFrame | null = null;
  version = -1;
  ended = false;
  lastHeartbeat = 0;
  constructor(maxPending: number, maxPlayers: number, keeps: boolean) {
    this.buffer = new LocalBuffer({ maxPending, maxPlayers });
    this.buffer.keeps = keeps;
  }
}

const now = (): number => performance.now();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const backoff = (attempt: number): number =>
  RECONNECT_BACKOFF_MS[Math.min(attempt, RECONNECT_BACKOFF_MS.length - 1)]! * (0.5 + Math.random());

/** ValueError-like refusal of a player id the platform would refuse (the same rule). */
export function playerIdCheck(player: unknown): void {
  if (typeof player !== "string" || !PLAYER_ID_PATTERN.test(player)) {
    throw new RangeError(`player must be 1-64 letters, digits and _.:@-, got ${JSON.stringify(player)}`);
  }
  if (RESERVED_PLAYER_PREFIXES.some((prefix) => player.startsWith(prefix))) {
    throw new RangeError(`player ${JSON.stringify(player)} is a platform id`);
  }
}

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

export class ShardClient {
  readonly url: string;
  readonly shard: string;
  readonly tickMs: number;
  readonly heartbeatMs: number;
  readonly resendMs: number;
  readonly maxPending: number;
  readonly maxPlayers: number;
  readonly openTimeoutMs: number;
  readonly pingIntervalMs: number | null;
  epoch: number | null = null;
  connected = false;
  readonly stats: ClientStats = { sent: 0, resent: 0, acked: 0, duplicates: 0, fences: 0, connects: 0, unanswered_closes: 0, errors: {} };
  lastError: Frame | null = null;
  /** The `bye_ack` of a clean stop. */
  left: ByeAckFrame | null = null;
  readonly bosses = new Map<string, BossEntry>();
  private readonly token: string;
  private ws: Socket | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private loop: Promise<void> | null = null;
  private rotate = false; // fenced: switch to a new epoch once nothing is in flight
  private releasing: Set<string> | null = null;
  private stopping = false;
  private fatal: string | null = null;
  private keeps = false;
  private bye: { promise: Promise<ByeAckFrame>; resolve: (f: ByeAckFrame) => void } | null = null;
  private watchers = new Map<string, Socket | null>();

  constructor(url: string, options: ShardClientOptions) {
    this.url = url.replace(/\/+$/, "");
    this.shard = options.shard;
    this.token = options.token;
    this.tickMs = options.tickMs ?? 100;
    this.heartbeatMs = options.heartbeatMs ?? 1000;
    this.resendMs = options.resendMs ?? this.tickMs;
    this.maxPending = options.maxPending ?? MAX_DELTA_AMOUNT;
    this.maxPlayers = options.maxPlayers ?? DEFAULT_MAX_PLAYERS;
    this.openTimeoutMs = options.openTimeoutMs ?? 5000;
    this.pingIntervalMs = options.pingIntervalMs === undefined ? PING_INTERVAL_MS : options.pingIntervalMs;
  }

  // --- the game's side: O(1), no I/O ----------------------------------------------------

  /** Add one hit to `boss`'s buffer. Throws RangeError (bad amount or player id) or BufferFull. */
  hit(boss: string, amount: number, player?: string | null): void {
    if (!Number.isInteger(amount) || amount < 1) {
      throw new RangeError(`amount must be a whole number >= 1, got ${amount}`);
    }
    if (player != null) playerIdCheck(player);
    const b = this.boss(boss);
    if (b.ended) return; // the fight is over: there is nothing left to damage
    b.buffer.add(amount, player);
  }

  /** This shard's damage to `boss` not acknowledged yet. */
  unacked(boss: string): number {
    return this.bosses.get(boss)?.buffer.unacked ?? 0;
  }

  /** The newest `state` frame seen for `boss` (needs `watch`). */
  state(boss: string): StateFrame | null {
    return this.bosses.get(boss)?.state ?? null;
  }

  /** Truth minus this shard's unacknowledged damage (null before the first state). */
  predictedHp(boss: string): number | null {
    const b = this.bosses.get(boss);
    if (b?.state == null) return null;
    return Math.max(0, b.state.hp - b.buffer.unacked);
  }

  private boss(slug: string): BossEntry {
    let b = this.bosses.get(slug);
    if (b === undefined) {
      b = new BossEntry(this.maxPending, this.maxPlayers, this.keeps);
      this.bosses.set(slug, b);
    }
    return b;
  }

  // --- lifecycle ------------------------------------------------------------------------

  /** Start connecting and ticking (returns at once; never waits for the platform). */
  start(): void {
    this.loop = this.connectionLoop();
    this.timer = setInterval(() => this.sendDue(now()), this.tickMs);
  }

  async waitConnected(timeoutMs = 10_000): Promise<void> {
    const deadline = now() + timeoutMs;
    while (!this.connected) {
      if (now() > deadline) throw new Error(`not connected after ${timeoutMs} ms`);
      await sleep(5);
    }
  }

  /** Wait until nothing is held for any live boss (true) or `timeoutMs` passed (false). */
  async flush(timeoutMs = 10_000): Promise<boolean> {
    const deadline = now() + timeoutMs;
    while (now() < deadline) {
      if ([...this.bosses.values()].every((b) => b.buffer.unacked === 0 || b.ended)) return true;
      await sleep(this.tickMs / 2);
    }
    return false;
  }

  /** Flush (bounded), say `bye`, close everything; whether everything was acknowledged. */
  async stop(options: { flush?: boolean; timeoutMs?: number } = {}): Promise<boolean> {
    const done = options.flush === false ? false : await this.flush(options.timeoutMs ?? 10_000);
    this.stopping = true;
    if (done && this.ws !== null) await this.sayGoodbye(this.ws);
    if (this.timer !== null) clearInterval(this.timer);
    for (const socket of this.watchers.values()) socket?.close(1000);
    this.ws?.close(1000); // the close handshake, given up after CLOSE_TIMEOUT_MS
    await this.loop;
    return done;
  }

  private async sayGoodbye(ws: Socket): Promise<void> {
    this.bye = deferred<ByeAckFrame>();
    try {
      for (const [slug, b] of this.bosses) {
        // a boss that is over is told too: an earlier heartbeat may have reported damage
        if (b.buffer.nextSeq > 1) ws.send(JSON.stringify(heartbeatEmpty(slug)));
      }
      ws.send(JSON.stringify({ type: "bye" } satisfies ByeFrame));
      this.left = await Promise.race([this.bye.promise, sleep(2000).then(() => null)]);
    } catch {
      // the crash path covers a session that could not say goodbye
    }
  }

  /** Drop the shard socket as a network failure would (tests, chaos drills). */
  dropConnection(): void {
    this.ws?.abort();
  }

  // --- state subscription -----------------------------------------------------------------

  /** Follow `boss`'s live state over /ws/bosses/<slug>/ (reconnects on its own). */
  watch(boss: string): void {
    this.boss(boss);
    if (!this.watchers.has(boss)) {
      this.watchers.set(boss, null);
      void this.watchLoop(boss);
    }
  }

  private async watchLoop(slug: string): Promise<void> {
    const b = this.boss(slug);
    let attempt = 0;
    while (!this.stopping) {
      const closed = deferred<void>();
      try {
        const socket = await openSocket(`${this.url}/ws/bosses/${encodeURIComponent(slug)}/`, {
          onMessage: (text) => this.onState(b, JSON.parse(text) as Frame),
          onClose: () => closed.resolve(),
        });
        this.watchers.set(slug, socket);
        attempt = 0;
        b.version = -1; // the snapshot after a (re)connect is the truth
        await closed.promise;
      } catch {
        // reconnect below
      }
      if (this.stopping) break;
      await sleep(backoff(attempt++));
    }
  }

  private onState(b: BossEntry, msg: Frame): void {
    if (msg.type !== "state") return;
    const state = msg as unknown as StateFrame;
    if (state.version === 1 && b.version > 1) {
      b.version = -1; // the boss was reset: a new fight
      b.ended = false;
    }
    if (state.version > b.version) {
      b.version = state.version;
      b.state = state;
      if (ENDED_STATUSES.includes(state.status)) b.ended = true;
    }
  }

  // --- connection -------------------------------------------------------------------------

  private async connectionLoop(): Promise<void> {
    let attempt = 0;
    while (!this.stopping && this.fatal === null) {
      await this.connectOnce().then(
        (welcomed) => {
          if (welcomed) attempt = 0;
        },
        () => undefined,
      );
      if (!this.stopping && this.fatal === null && !this.rotate) await sleep(backoff(attempt++));
    }
  }

  /** One connection, from the auth frame to its close; whether it was welcomed. */
  private async connectOnce(): Promise<boolean> {
    const first = deferred<Frame | null>();
    const closed = deferred<void>();
    let welcomed = false;
    let socket: Socket | null = null;
    try {
      socket = await openSocket(`${this.url}/ws/shards/${encodeURIComponent(this.shard)}/`, {
        onMessage: (text) => {
          const msg = JSON.parse(text) as Frame;
          if (!welcomed) first.resolve(msg);
          else this.onFrame(msg, socket!);
        },
        onClose: (code) => {
          first.resolve(null);
          if (PERMANENT_CLOSE_CODES.includes(code)) this.fatal = `closed with ${code}`;
          closed.resolve();
        },
        onUnansweredClose: () => (this.stats.unanswered_closes += 1),
      }, { pingIntervalMs: this.pingIntervalMs, closeTimeoutMs: CLOSE_TIMEOUT_MS });
      socket.send(JSON.stringify(this.authFrame()));
      const timeout = sleep(this.openTimeoutMs).then(() => null);
      const welcome = await Promise.race([first.promise, timeout]);
      if (welcome === null) throw new Error("no welcome");
      this.onWelcome(welcome);
      welcomed = true;
      this.ws = socket;
      this.connected = true;
      await closed.promise;
      return true;
    } finally {
      this.ws = null;
      this.connected = false;
      socket?.abort();
    }
  }

  /** Authenticate with the first frame (a browser cannot set headers), resuming the current
   * epoch unless a fence retires it and nothing is in flight under it any more. */
  private authFrame(): AuthFrame {
    const inFlight = [...this.bosses.values()].some((b) => b.buffer.inflight !== null);
    const resume = this.rotate && !inFlight ? null : this.epoch;
    return resume ? { type: "auth", token: this.token, resume } : { type: "auth", token: this.token };
  }

  private onWelcome(welcome: Frame): void {
    if (welcome.type !== "welcome") {
      this.onError(welcome as unknown as ErrorFrame);
      if (welcome.code === ErrorCode.UNAUTHORIZED || welcome.code === ErrorCode.UNKNOWN_SHARD) {
        this.fatal = String(welcome.code);
      }
      throw new Error(`refused: ${String(welcome.code)}: ${String(welcome.detail)}`);
    }
    const w = welcome as unknown as WelcomeFrame;
    const epoch = Number(w.epoch);
    if (w.durable === true) {
      this.keeps = true; // keep acknowledged deltas until durable_seq
      for (const b of this.bosses.values()) b.buffer.keeps = true;
    }
    if (this.epoch !== null && epoch !== this.epoch) {
      for (const b of this.bosses.values()) if (b.buffer.inflight === null) b.buffer.nextSeq = 1;
    }
    this.epoch = epoch;
    this.rotate = false;
    this.releasing = null;
    this.stats.connects += 1;
    for (const b of this.bosses.values()) b.sentAt = 0; // re-send at once what was in flight
  }

  private onFrame(msg: Frame, socket: Socket): void {
    this.handleFrame(msg);
    if (this.rotate && ![...this.bosses.values()].some((b) => b.buffer.inflight !== null)) {
      if (this.releasing === null) this.releaseSessions(socket);
      if (this.releasing !== null && this.releasing.size === 0) {
        // fenced: reconnect for a new epoch now that nothing is in flight, once the close
        // handshake is done (or given up after CLOSE_TIMEOUT_MS)
        socket.close(1000);
      }
    }
  }

  /** Before leaving an epoch, tell each boss's old session it holds nothing any more. */
  private releaseSessions(socket: Socket): void {
    this.releasing = new Set();
    for (const [slug, b] of this.bosses) {
      if (!b.ended && b.buffer.nextSeq > 1) this.releasing.add(slug);
    }
    for (const slug of this.releasing) socket.send(JSON.stringify(heartbeatEmpty(slug)));
  }

  private handleFrame(msg: Frame): void {
    const kind = msg.type;
    const slug = typeof msg.boss === "string" ? msg.boss : "";
    const b = this.bosses.get(slug);
    if (this.releasing && (kind === "heartbeat_ack" || (kind === "error" && msg.ref === "heartbeat"))) {
      this.releasing.delete(slug);
    }
    if (kind === "ack" && b !== undefined) {
      if (msg.duplicate) this.stats.duplicates += 1;
      const inflight = b.buffer.inflight;
      if (inflight !== null && b.buffer.acked(Number(msg.seq))) this.stats.acked += inflight.amount;
    } else if (kind === "heartbeat_ack" && b !== undefined) {
      const lastSeq = Number(msg.last_seq ?? 0);
      const inflight = b.buffer.inflight;
      if (inflight !== null && inflight.seq <= lastSeq) {
        b.buffer.acked(inflight.seq); // it had landed; its ack was lost
        this.stats.acked += inflight.amount;
      }
      if (typeof msg.durable_seq === "number") b.buffer.durable(msg.durable_seq);
      if (b.buffer.behind(lastSeq)) b.sentAt = 0; // the authority lost acknowledged deltas
    } else if (kind === "bye_ack") {
      this.bye?.resolve(msg as unknown as ByeAckFrame);
    } else if (kind === "error") {
      this.onError(msg as unknown as ErrorFrame);
    }
  }

  private onError(msg: ErrorFrame): void {
    const code = msg.code ?? "error";
    this.stats.errors[code] = (this.stats.errors[code] ?? 0) + 1;
    this.lastError = msg as unknown as Frame;
    const b = typeof msg.boss === "string" ? this.bosses.get(msg.boss) : undefined;
    if (b === undefined) return;
    if (code === ErrorCode.FENCED && (msg.ref === "damage" || msg.ref === "heartbeat")) {
      if (msg.ref === "damage" && b.buffer.inflight === null) return; // a late duplicate
      if (b.buffer.nextSeq === 1 && b.buffer.inflight === null) return;
      const credited = msg.credited;
      b.buffer.fenced(
        Number(msg.last_seq ?? 0),
        Number(msg.settled ?? 0),
        credited !== null && typeof credited === "object" ? new Map(Object.entries(credited)) : undefined,
      );
      this.stats.fences += 1;
      this.rotate = true;
    } else if (
      (code === ErrorCode.NOT_LIVE && ENDED_STATUSES.includes(String(msg.status))) ||
      code === ErrorCode.UNKNOWN_BOSS
    ) {
      b.ended = true;
      b.buffer.dropAll();
    } else if (code === ErrorCode.SEQ_GAP && b.buffer.inflight !== null) {
      if (msg.seq === b.buffer.inflight.seq) {
        b.buffer.realign(Number(msg.last_seq ?? 0)); // a reset (renumber) or a rollback (re-send)
        b.sentAt = 0;
      }
    }
  }

  // --- tick and heartbeat -----------------------------------------------------------------

  private sendDue(at: number): void {
    const ws = this.ws;
    if (ws === null || !ws.open) return;
    try {
      for (const [slug, b] of this.bosses) {
        if (b.ended) continue;
        const damage = this.damageFrame(slug, b, at);
        if (damage !== null) ws.send(JSON.stringify(damage));
        if (this.releasing !== null) continue; // leaving this epoch
        const beat = this.heartbeatFrame(slug, b, at);
        if (beat !== null) ws.send(JSON.stringify(beat));
      }
    } catch {
      // the connection loop notices and reconnects
    }
  }

  private damageFrame(slug: string, b: BossEntry, at: number): DamageFrame | null {
    let delta = b.buffer.inflight;
    if (delta !== null) {
      if (at - b.sentAt < this.resendMs) return null;
      if (b.sentAt) this.stats.resent += 1;
    } else if (this.rotate) {
      return null; // no new seq under an epoch that is being replaced
    } else {
      delta = b.buffer.take();
      if (delta === null) return null;
    }
    const frame: DamageFrame = { type: "damage", boss: slug, seq: delta.seq, amount: delta.amount };
    if (delta.breakdown.size > 0) frame.breakdown = Object.fromEntries(delta.breakdown);
    b.sentAt = at;
    this.stats.sent += 1;
    return frame;
  }

  private heartbeatFrame(slug: string, b: BossEntry, at: number): HeartbeatFrame | null {
    const buf = b.buffer;
    if (at - b.lastHeartbeat < this.heartbeatMs || !(buf.nextSeq > 1 || buf.unacked)) return null;
    const inflight = buf.inflight;
    // Who the held damage belongs to: a fair crash saga credits these players. The in-flight
    // delta's players go with it: the platform counts them only while it is not accepted.
    const [heldBy, flight] = buf.heldParts();
    const beat: HeartbeatFrame = {
      type: "heartbeat",
      boss: slug,
      pending: buf.waiting,
      // the highest seq sent so far: a heartbeat the platform gets after a later delta
      // (delayed on a socket this client left) is then known to be stale
      sent: buf.nextSeq - 1,
      inflight: inflight ? { seq: inflight.seq, amount: inflight.amount, breakdown: Object.fromEntries(flight) } : null,
    };
    if (heldBy.size > 0) beat.breakdown = Object.fromEntries(heldBy);
    b.lastHeartbeat = at;
    return beat;
  }

  /** Heartbeat every boss at the next tick (drills, tests). */
  heartbeatSoon(): void {
    for (const b of this.bosses.values()) b.lastHeartbeat = 0;
  }
}

function heartbeatEmpty(boss: string): HeartbeatFrame {
  return { type: "heartbeat", boss, pending: 0, inflight: null };
}
