import assert from "node:assert/strict";
import { test } from "node:test";

import { BufferFull, LocalBuffer } from "../src/buffer.js";
import { MAX_BREAKDOWN_ENTRIES } from "../src/protocol.js";

test("the in-flight delta is re-sent with the same seq until acked", () => {
  const b = new LocalBuffer();
  b.add(5, "alice");
  b.add(3, null);
  const first = b.take()!;
  assert.deepEqual([first.seq, first.amount, Object.fromEntries(first.breakdown)], [1, 8, { alice: 5 }]);
  b.add(2, "bob");
  assert.equal(b.take(), first);
  assert.equal(b.acked(1), true);
  const second = b.take()!;
  assert.deepEqual([second.seq, second.amount], [2, 2]);
  assert.equal(b.unacked, 2);
});

test("a fence drops an accepted in-flight delta and exactly what was settled, credited players first", () => {
  const b = new LocalBuffer();
  b.add(100, "alice");
  b.take();
  b.add(40, "bob");
  b.add(10, null);
  b.heldBreakdown(); // the heartbeat: bob 40 (pending first), alice 100 (in flight)
  const left = b.fenced(0, 120); // never accepted: back to pending; 120 settled
  assert.equal(left, 30);
  assert.equal(b.dropped, 120);
  assert.equal(b.nextSeq, 1);
  assert.deepEqual(Object.fromEntries(b.players), { alice: 20 }); // what the Python SDK keeps too
  assert.equal(b.unattributed, 10);
});

test("kept deltas are re-sent under their own seqs when the authority comes back behind them", () => {
  const b = new LocalBuffer();
  b.keeps = true;
  for (let i = 0; i < 3; i++) {
    b.add(10, "p");
    b.take();
    b.acked(i + 1);
  }
  b.durable(1);
  assert.deepEqual(b.kept.map((d) => d.seq), [2, 3]);
  assert.equal(b.behind(1), true);
  assert.deepEqual([b.inflight!.seq, b.queued.map((d) => d.seq)], [2, [3]]);
  assert.equal(b.replayed, 2);
});

test("the buffer is bounded and names at most MAX_BREAKDOWN_ENTRIES players per delta", () => {
  const b = new LocalBuffer({ maxPending: 10 });
  b.add(10);
  assert.throws(() => b.add(1), BufferFull);
  const many = new LocalBuffer();
  for (let i = 0; i < MAX_BREAKDOWN_ENTRIES + 5; i++) many.add(1, `p${i}`);
  assert.equal(many.take()!.breakdown.size, MAX_BREAKDOWN_ENTRIES);
  assert.equal(many.pending, 5);
});

test("a heartbeat's parts: who holds what waits, and the in-flight delta's players apart", () => {
  const b = new LocalBuffer();
  b.add(100, "alice");
  b.take();
  b.add(40, "bob");
  b.add(10, null);
  const [waiting, flight] = b.heldParts();
  assert.deepEqual([Object.fromEntries(waiting), Object.fromEntries(flight)], [{ bob: 40 }, { alice: 100 }]);
  assert.deepEqual(Object.fromEntries(b.reported), { bob: 40, alice: 100 });
  b.fenced(0, 60, new Map([["alice", 60]])); // the platform says whom it credited
  assert.deepEqual(Object.fromEntries(b.players), { alice: 40, bob: 40 });
});

test("giving up on a boss that is over counts the in-flight delta as dropped", () => {
  const b = new LocalBuffer();
  b.add(60, "a");
  b.take();
  b.add(10, "b");
  assert.equal(b.dropAll(), 70);
  assert.deepEqual([b.dropped, b.unacked, b.pending], [70, 0, 0]);
});
