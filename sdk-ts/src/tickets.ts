/**
 * Sign player tickets on the game's backend (docs/sdk.md, "Player tickets").
 *
 * `v1.<kid>.<payload_b64url>.<sig_b64url>`: payload is compact JSON
 * `{"sub", "exp", "iat", "shard"?, "boss"?}` in that order, sig = HMAC-SHA256(secret,
 * "v1.<kid>.<payload_b64url>"), both unpadded base64url. Never sign in a game client: whoever
 * holds the secret can be any player. Node only (node:crypto).
 */
import { createHmac } from "node:crypto";

export const MAX_TICKET_TTL_S = 24 * 3600;

export interface TicketOptions {
  secret: string | Uint8Array;
  keyId: string;
  player: string;
  ttlS?: number;
  shard?: string | null;
  boss?: string | null;
  nowS?: number;
}

const b64url = (raw: Buffer): string => raw.toString("base64url");

/** JSON as Python's json.dumps(ensure_ascii=True) writes it: non-ASCII as \uXXXX escapes. */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** A ticket vouching for `player` for `ttlS` seconds from `nowS` (default: now). */
export function playerTicketSign(options: TicketOptions): string {
  const ttl = options.ttlS ?? 3600;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TICKET_TTL_S) {
    throw new RangeError(`ttlS must be a whole number of seconds from 1 to ${MAX_TICKET_TTL_S}`);
  }
  const issued = Math.floor(options.nowS ?? Date.now() / 1000);
  const payload: Record<string, unknown> = { sub: options.player, exp: issued + ttl, iat: issued };
  if (options.shard != null) payload.shard = options.shard;
  if (options.boss != null) payload.boss = options.boss;
  const body = b64url(Buffer.from(asciiJson(payload), "ascii"));
  const signed = `v1.${options.keyId}.${body}`;
  const key = typeof options.secret === "string" ? Buffer.from(options.secret, "utf8") : options.secret;
  return `${signed}.${b64url(createHmac("sha256", key).update(signed, "ascii").digest())}`;
}
