/**
 * The player client for platform-hosted shards: `attack {boss, id}` -> `attack_ack {damage, id}`
 * (docs/protocol.md, "Platform-hosted players"), and the prediction helper a page draws with.
 *
 *     const player = new PlayerClient("wss://platform", { shard: "web-1", ticket });
 *     const welcome = await player.connect();
 *     const result = await player.attack("ragnaros");   // {ok: true, damage} or {ok: false, error}
 */
import type { AttackFrame } from "./frames.js";
import type { AttackAckFrame, ErrorFrame, WelcomeFrame } from "./protocol.js";
import { openSocket, type Socket } from "./socket.js";

export interface PlayerClientOptions {
  shard: string;
  /** A ticket the game's backend signed (playerTicketSign). */
  ticket?: string;
  /** Simulator mode only (LIVEOPS_SIMULATOR_PLAYERS=1 on the platform). */
  player?: string;
  attackTimeoutMs?: number;
}

export type AttackResult = { ok: true; damage: number; ack: AttackAckFrame } | { ok: false; error: ErrorFrame };

export class PlayerClient {
  readonly url: string;
  welcome: WelcomeFrame | null = null;
  private socket: Socket | null = null;
  private nextId = 1;
  private waiting = new Map<number | string, (r: AttackResult) => void>();
  private readonly options: PlayerClientOptions;
  /** Called with every frame that is not an answer to an attack (state, errors, ...). */
  onFrame: (frame: Record<string, unknown>) => void = () => undefined;

  constructor(url: string, options: PlayerClientOptions) {
    const query = options.ticket ? `?ticket=${encodeURIComponent(options.ticket)}` : options.player ? `?player=${encodeURIComponent(options.player)}` : "";
    this.url = `${url.replace(/\/+$/, "")}/ws/shards/${encodeURIComponent(options.shard)}/${query}`;
    this.options = options;
  }

  /** Open the socket; the `welcome` (rejects with the platform's error frame on a refusal). */
  async connect(): Promise<WelcomeFrame> {
    let first: ((frame: Record<string, unknown>) => void) | null = null;
    const welcomed = new Promise<Record<string, unknown>>((resolve) => (first = resolve));
    this.socket = await openSocket(this.url, {
      onMessage: (text) => {
        const frame = JSON.parse(text) as Record<string, unknown>;
        if (first) {
          const f = first;
          first = null;
          f(frame);
        } else this.dispatch(frame);
      },
      onClose: () => {
        first?.({ type: "error", code: "closed", detail: "the socket closed" });
        for (const resolve of this.waiting.values()) resolve({ ok: false, error: { type: "error", code: "closed", detail: "the socket closed" } });
        this.waiting.clear();
      },
    });
    const frame = await welcomed;
    if (frame.type !== "welcome") throw Object.assign(new Error(String(frame.detail)), { frame });
    this.welcome = frame as unknown as WelcomeFrame;
    return this.welcome;
  }

  /** One attack; resolves with its ack (the damage to subtract from the predicted HP) or refusal. */
  attack(boss: string): Promise<AttackResult> {
    if (this.socket === null) throw new Error("not connected");
    const id = this.nextId++;
    const frame: AttackFrame = { type: "attack", boss, id };
    return new Promise<AttackResult>((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        resolve({ ok: false, error: { type: "error", code: "timeout", detail: "no answer to the attack" } });
      }, this.options.attackTimeoutMs ?? 10_000);
      this.waiting.set(id, (result) => {
        clearTimeout(timer);
        resolve(result);
      });
      this.socket!.send(JSON.stringify(frame));
    });
  }

  close(): void {
    this.socket?.close(1000);
  }

  private dispatch(frame: Record<string, unknown>): void {
    const id = frame.id as number | string | undefined;
    const resolve = id !== undefined ? this.waiting.get(id) : undefined;
    if (resolve && frame.type === "attack_ack") {
      this.waiting.delete(id!);
      const ack = frame as unknown as AttackAckFrame;
      resolve({ ok: true, damage: ack.damage, ack });
    } else if (resolve && frame.type === "error") {
      this.waiting.delete(id!);
      resolve({ ok: false, error: frame as unknown as ErrorFrame });
    } else {
      this.onFrame(frame);
    }
  }
}

/**
 * Predicted HP for a page: the newest `state` frame's HP less the damage this player was
 * acknowledged since (each `attack_ack`'s damage), never below 0. A newer state replaces
 * the truth; damage acknowledged before that state's time is forgotten.
 */
export class HpPrediction {
  private truth: { hp: number; version: number; at: number } | null = null;
  private pending: { damage: number; at: number }[] = [];

  /** A `state` frame (ts in ms, as the platform sends it). */
  state(frame: { hp: number; version: number; ts: number | null }): void {
    if (this.truth !== null && frame.version <= this.truth.version) return;
    const at = frame.ts ?? Date.now();
    this.truth = { hp: frame.hp, version: frame.version, at };
    this.pending = this.pending.filter((p) => p.at > at);
  }

  /** An acknowledged attack's damage. */
  hit(damage: number, at = Date.now()): void {
    this.pending.push({ damage, at });
  }

  get hp(): number | null {
    if (this.truth === null) return null;
    return Math.max(0, this.truth.hp - this.pending.reduce((s, p) => s + p.damage, 0));
  }
}

/** Where to draw a value between two updates: linear from `from` to `to` over `durationMs`. */
export function interpolate(from: number, to: number, startedAt: number, durationMs: number, now = Date.now()): number {
  if (durationMs <= 0) return to;
  const t = Math.min(1, Math.max(0, (now - startedAt) / durationMs));
  return from + (to - from) * t;
}
