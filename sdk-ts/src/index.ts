/**
 * The World Boss platform's SDK for TypeScript and JavaScript (docs/sdk.md).
 *
 * Game servers: `ShardClient`. Players of platform-hosted shards: `PlayerClient`, `HpPrediction`.
 * A game's backend: `playerTicketSign`, `webhookVerify` (Node). Protocol constants and the
 * platform's frame types: `protocol` (generated from the server's source).
 */
export { BufferFull, LocalBuffer, type Delta } from "./buffer.js";
export { ShardClient, playerIdCheck, type ClientStats, type ShardClientOptions } from "./client.js";
export type * from "./frames.js";
export { HpPrediction, PlayerClient, interpolate, type AttackResult, type PlayerClientOptions } from "./player.js";
export * as protocol from "./protocol.js";
export { CloseCode, ErrorCode, PROTOCOL_VERSION, Status } from "./protocol.js";
export { playerTicketSign, type TicketOptions } from "./tickets.js";
export { WebhookVerificationError, webhookSign, webhookVerify, type WebhookVerifyOptions } from "./webhooks.js";

export const VERSION = "0.2.0";
