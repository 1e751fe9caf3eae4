import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { playerTicketSign } from "../src/tickets.js";
import { WebhookVerificationError, webhookVerify } from "../src/webhooks.js";

// the shared vectors of the conformance kit, written from the platform's own code
const vectors = new URL("../../../conformance/vectors/", import.meta.url);
const read = (name: string) => JSON.parse(readFileSync(new URL(name, vectors), "utf8"));

test("every ticket vector is signed byte for byte", () => {
  for (const v of read("tickets.json").sign) {
    const ticket = playerTicketSign({ secret: v.secret, keyId: v.key_id, player: v.player, ttlS: v.ttl_s, shard: v.shard, boss: v.boss, nowS: v.now_s });
    assert.equal(ticket, v.ticket, v.player);
  }
});

test("the signer refuses a lifetime the platform would refuse", () => {
  for (const ttlS of [0, -1, 86_401, 1.5]) assert.throws(() => playerTicketSign({ secret: "s", keyId: "k", player: "p", ttlS }), RangeError);
});

test("every webhook vector gets the platform's verdict", () => {
  for (const c of read("webhooks.json").cases) {
    let verdict = "ok";
    try {
      webhookVerify({ secret: c.secret, body: Buffer.from(c.body, "utf8"), timestamp: c.timestamp, signature: c.signature, toleranceS: c.tolerance_s, nowS: c.now_s });
    } catch (err) {
      assert.ok(err instanceof WebhookVerificationError, String(err));
      verdict = err.code;
    }
    assert.equal(verdict, c.expect, c.name);
  }
});
