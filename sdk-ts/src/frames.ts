/**
 * The frames a client sends (docs/protocol.md). The frames the platform sends, and every
 * constant, are generated into protocol.ts from the server's own source.
 */

export interface AuthFrame {
  type: "auth";
  token: string;
  resume?: number;
}

export interface DamageFrame {
  type: "damage";
  boss: string;
  seq: number;
  amount: number;
  breakdown?: Record<string, number>;
  epoch?: number;
}

export interface HeartbeatFrame {
  type: "heartbeat";
  boss: string;
  pending: number;
  /** The highest seq the client had sent: the platform ignores a heartbeat that arrives after a later delta. */
  sent?: number;
  /** `breakdown`: the in-flight delta's own players (counted while it is not accepted). */
  inflight: { seq: number; amount: number; breakdown?: Record<string, number> } | null;
  breakdown?: Record<string, number>;
}

export interface ByeFrame {
  type: "bye";
}

export interface AttackFrame {
  type: "attack";
  boss: string;
  id?: number | string;
}

export interface PingFrame {
  type: "ping";
  id?: number | string;
}

export type ClientFrame = AuthFrame | DamageFrame | HeartbeatFrame | ByeFrame | AttackFrame | PingFrame;
