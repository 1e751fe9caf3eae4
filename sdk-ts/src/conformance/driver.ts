/**
 * The conformance kit's driver for this SDK: JSON-line commands on stdin, one JSON line each on
 * stdout (conformance/README.md, "The driver protocol"). `node dist/src/conformance/driver.js`.
 */
import { createInterface } from "node:readline";

import { BufferFull } from "../buffer.js";
import { ShardClient } from "../client.js";
import { PROTOCOL_VERSION } from "../protocol.js";
import { playerTicketSign } from "../tickets.js";
import { WebhookVerificationError, webhookVerify } from "../webhooks.js";
import { VERSION } from "../index.js";

type Cmd = Record<string, unknown> & { cmd?: string; id?: unknown };
type Reply = Record<string, unknown>;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const ms = (cmd: Cmd, fallback = 10_000) => Number(cmd.timeout_ms ?? fallback);

function answer(reply: Reply): void {
  process.stdout.write(JSON.stringify(reply) + "\n");
}

class Driver {
  client: ShardClient | null = null;
  generated: Record<string, number> = {};

  private get c(): ShardClient {
    if (this.client === null) throw new Error("not connected");
    return this.client;
  }

  async hello(): Promise<Reply> {
    return { sdk: "typescript", version: VERSION, protocol: PROTOCOL_VERSION };
  }

  async connect(cmd: Cmd): Promise<Reply> {
    const client = new ShardClient(String(cmd.url), {
      shard: String(cmd.shard),
      token: String(cmd.token),
      tickMs: Number(cmd.tick_ms ?? 100),
      heartbeatMs: Number(cmd.heartbeat_ms ?? 1000),
      ...(cmd.max_pending !== undefined ? { maxPending: Number(cmd.max_pending) } : {}),
    });
    this.client = client;
    client.start();
    await client.waitConnected(ms(cmd));
    return { epoch: client.epoch };
  }

  async hit(cmd: Cmd): Promise<Reply> {
    const boss = String(cmd.boss);
    const amount = Number(cmd.amount);
    const count = Number(cmd.count ?? 1);
    const player = cmd.player == null ? null : String(cmd.player);
    let done = 0;
    try {
      for (; done < count; done++) this.c.hit(boss, amount, player);
    } catch (err) {
      if (err instanceof BufferFull) return { hits: done, error: "buffer_full" };
      throw err;
    } finally {
      this.generated[boss] = (this.generated[boss] ?? 0) + done * amount;
    }
    return { hits: done };
  }

  async flush(cmd: Cmd): Promise<Reply> {
    return { flushed: await this.c.flush(ms(cmd)) };
  }

  async wait_acked(cmd: Cmd): Promise<Reply> {
    const deadline = Date.now() + ms(cmd);
    const goal = Number(cmd.amount);
    while (this.c.stats.acked < goal && Date.now() < deadline) await sleep(10);
    return { acked: this.c.stats.acked, reached: this.c.stats.acked >= goal };
  }

  async wait_connected(cmd: Cmd): Promise<Reply> {
    const deadline = Date.now() + ms(cmd);
    const above = cmd.epoch_above == null ? null : Number(cmd.epoch_above);
    while (Date.now() < deadline) {
      if (this.c.connected && (above === null || (this.c.epoch ?? 0) > above)) return { connected: true, epoch: this.c.epoch };
      await sleep(10);
    }
    return { connected: false, epoch: this.c.epoch };
  }

  async heartbeat(): Promise<Reply> {
    this.c.heartbeatSoon();
    return {};
  }

  async stats(): Promise<Reply> {
    const c = this.c;
    const unacked: Record<string, number> = {};
    const dropped: Record<string, number> = {};
    let replayed = 0;
    let kept = 0;
    for (const [slug, b] of c.bosses) {
      unacked[slug] = b.buffer.unacked;
      dropped[slug] = b.buffer.dropped;
      replayed += b.buffer.replayed;
      kept += b.buffer.kept.length;
    }
    return { epoch: c.epoch, connected: c.connected, ...c.stats, generated: this.generated, unacked, dropped, replayed, kept };
  }

  async bye(cmd: Cmd): Promise<Reply> {
    const flushed = await this.c.stop({ timeoutMs: ms(cmd) });
    return { flushed, left: this.c.left };
  }

  async crash(cmd: Cmd): Promise<Reply> {
    process.stdout.write(JSON.stringify({ id: cmd.id, ok: true }) + "\n", () => process.exit(0));
    return new Promise(() => undefined); // never answered twice: the process ends
  }

  async sign_ticket(cmd: Cmd): Promise<Reply> {
    const ticket = playerTicketSign({
      secret: String(cmd.secret),
      keyId: String(cmd.key_id),
      player: String(cmd.player),
      ttlS: Number(cmd.ttl_s),
      shard: cmd.shard == null ? null : String(cmd.shard),
      boss: cmd.boss == null ? null : String(cmd.boss),
      nowS: Number(cmd.now_s),
    });
    return { ticket };
  }

  async verify_webhook(cmd: Cmd): Promise<Reply> {
    try {
      const body = webhookVerify({
        secret: String(cmd.secret),
        body: Buffer.from(String(cmd.body), "utf8"),
        timestamp: String(cmd.timestamp),
        signature: String(cmd.signature),
        toleranceS: Number(cmd.tolerance_s ?? 300),
        nowS: Number(cmd.now_s),
      });
      return { valid: true, body };
    } catch (err) {
      if (err instanceof WebhookVerificationError) return { valid: false, code: err.code };
      throw err;
    }
  }
}

const COMMANDS = new Set(["hello", "connect", "hit", "flush", "wait_acked", "wait_connected", "heartbeat", "stats", "bye", "crash", "sign_ticket", "verify_webhook"]);

async function main(): Promise<void> {
  const driver = new Driver();
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const cmd = JSON.parse(line) as Cmd;
    const name = String(cmd.cmd ?? "");
    if (name === "quit") break;
    if (!COMMANDS.has(name)) {
      answer({ id: cmd.id, ok: false, error: "unsupported" });
      continue;
    }
    try {
      const handler = (driver as unknown as Record<string, (c: Cmd) => Promise<Reply>>)[name]!;
      answer({ id: cmd.id, ok: true, ...(await handler.call(driver, cmd)) });
    } catch (err) {
      answer({ id: cmd.id, ok: false, error: String(err) });
    }
  }
  await driver.client?.stop({ flush: false });
  process.exit(0);
}

void main();
