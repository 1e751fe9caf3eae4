import assert from "node:assert/strict";
import { test } from "node:test";

import { playerIdCheck } from "../src/client.js";
import { CloseCode, ErrorCode, PERMANENT_CLOSE_CODES, PLAYER_ID_PATTERN } from "../src/protocol.js";

test("the generated constants are the server's", () => {
  assert.equal(ErrorCode.FENCED, "fenced");
  assert.deepEqual([...PERMANENT_CLOSE_CODES], [CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN, CloseCode.UNKNOWN_BOSS]);
});

test("player ids: the platform's rule, matched whole", () => {
  assert.ok(PLAYER_ID_PATTERN.test("hero-42"));
  assert.ok(!PLAYER_ID_PATTERN.test("hero\n"));
  assert.throws(() => playerIdCheck("user:1"), RangeError);
  assert.throws(() => playerIdCheck("a b"), RangeError);
  playerIdCheck("p.1:x@y_z-w");
});
