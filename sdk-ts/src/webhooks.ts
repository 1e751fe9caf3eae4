/**
 * Verify the platform's signed webhooks on the game's backend (docs/webhooks.md).
 *
 * Headers: `Webhook-Id` (dedupe on it), `Webhook-Timestamp` (unix seconds),
 * `Webhook-Signature` (`v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, several values
 * while a secret is rotated), `Webhook-Event`. The same rules as the Python SDK's
 * `webhook_verify`, held to conformance/vectors/webhooks.json. Node only (node:crypto).
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_VERSION = "v1";
export const HEADER_ID = "Webhook-Id";
export const HEADER_TIMESTAMP = "Webhook-Timestamp";
export const HEADER_SIGNATURE = "Webhook-Signature";
export const HEADER_EVENT = "Webhook-Event";
export const DEFAULT_TOLERANCE_S = 300;
export const MAX_SIGNATURES = 8;
export const MAX_TIMESTAMP_DIGITS = 12;

export type WebhookErrorCode = "webhook_malformed" | "webhook_stale" | "webhook_bad_signature";

/** A webhook was refused; `code` says why (stable). */
export class WebhookVerificationError extends Error {
  constructor(
    readonly code: WebhookErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "WebhookVerificationError";
  }
}

const malformed = (message: string) => new WebhookVerificationError("webhook_malformed", message);

export interface WebhookVerifyOptions {
  secret: string | Uint8Array;
  /** The raw request body, before any JSON parsing. */
  body: Uint8Array | string;
  timestamp: string;
  signature: string;
  toleranceS?: number;
  nowS?: number;
}

/** The hex HMAC-SHA256 of `"<timestamp>.<body>"` under `secret` (one v1 value). */
export function webhookSign(secret: string | Uint8Array, timestamp: string, body: Uint8Array | string): string {
  return createHmac("sha256", secret).update(`${timestamp}.`, "ascii").update(body).digest("hex");
}

function signaturesParse(signature: string): string[] {
  const items = signature.trim().split(/[\s,]+/).filter(Boolean);
  if (items.length === 0 || items.length > MAX_SIGNATURES) {
    throw malformed(`${HEADER_SIGNATURE} must hold 1 to ${MAX_SIGNATURES} values`);
  }
  const found: string[] = [];
  for (const item of items) {
    const at = item.indexOf("=");
    if (at < 0) throw malformed(`${HEADER_SIGNATURE} value ${item.slice(0, 20)} is not <version>=<hex>`);
    if (item.slice(0, at) !== SIGNATURE_VERSION) continue; // a later scheme's value
    const value = item.slice(at + 1);
    if (!/^[0-9a-f]{64}$/.test(value)) throw malformed(`${HEADER_SIGNATURE} has a v1 value that is not 64 lowercase hex digits`);
    found.push(value);
  }
  if (found.length === 0) throw malformed(`${HEADER_SIGNATURE} has no ${SIGNATURE_VERSION}= value`);
  return found;
}

/** Check a webhook's signature and freshness; its parsed JSON body (an object). */
export function webhookVerify(options: WebhookVerifyOptions): Record<string, unknown> {
  const secret = options.secret;
  if (secret.length === 0) throw malformed("the secret must be non-empty");
  const stamp = options.timestamp.trim();
  if (!/^[0-9]+$/.test(stamp) || stamp.length > MAX_TIMESTAMP_DIGITS) {
    throw malformed(`${HEADER_TIMESTAMP} is not unix seconds`);
  }
  const candidates = signaturesParse(options.signature);
  const now = options.nowS ?? Date.now() / 1000;
  const tolerance = options.toleranceS ?? DEFAULT_TOLERANCE_S;
  if (Math.abs(now - Number(stamp)) > tolerance) {
    throw new WebhookVerificationError("webhook_stale", `${HEADER_TIMESTAMP} is further than ${tolerance} s from now`);
  }
  const expected = Buffer.from(webhookSign(secret, stamp, options.body), "ascii");
  let matched = false;
  for (const candidate of candidates) {
    matched = timingSafeEqual(expected, Buffer.from(candidate, "ascii")) || matched; // no early exit
  }
  if (!matched) {
    throw new WebhookVerificationError("webhook_bad_signature", "no signature matches this body and timestamp");
  }
  const text = typeof options.body === "string" ? options.body : Buffer.from(options.body).toString("utf8");
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw malformed(`the body is not JSON: ${String(err)}`);
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) throw malformed("the body is not a JSON object");
  return data as Record<string, unknown>;
}
