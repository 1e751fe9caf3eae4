-- Record a shard session's sign of life and what it still holds unacknowledged.
-- KEYS: 1 state, 2 seq, 3 settled, 4 floor, 5 hb, 6 held, 7 hbase, 8 archived,
--       9 heldby (session -> per-player part of held, JSON ["<player>",<damage>,...])
-- ARGV: 1 shard, 2 epoch, 3 pending (local buffer not yet in any delta),
--       4 in-flight seq (0: none), 5 in-flight amount, 6 session field (core/keys.py
--       session_id), 7 the most a session may hold (core/limits.py MAX_HELD_AMOUNT),
--       8 sent: the session's highest seq the client had sent when it made this heartbeat
--       (-1: not reported), 9 n: how many (player, damage) pairs follow for the pending
--       part, 10.. those n pairs,
--       then pairs of the in-flight delta's part (validated: positive whole numbers, at most
--       MAX_BREAKDOWN_ENTRIES each, the pending part's sum <= pending and the in-flight
--       part's <= its amount; a client that sends one merged breakdown has it all as the
--       pending part, its sum <= pending + in-flight amount)
-- Returns {'ok', last_seq, held, durable_seq, attributed} or
-- {'fenced', last_seq, detail, credited} or {'no_boss', 0, ''}; durable_seq: the session's
-- highest seq in the SQL archive (the archive writes it), so a client may stop keeping
-- deltas up to it; attributed: the sum of the breakdown stored with held (<= held);
-- credited: what a fair settlement credited (heldby's JSON, '' if none), so the client drops
-- exactly that from each player.
-- The in-flight delta counts as held only if it was not accepted yet, and so does its part of
-- the breakdown; later accepted deltas shrink 'held' and the breakdown by their own
-- breakdown again (ingest.lua), so a crash saga recovers exactly the damage the platform
-- knows of and never accepted, and credits each player exactly their part of it.
-- A stale heartbeat changes nothing but the sign of life: one that arrives after a delta it
-- did not know of was accepted (past its in-flight seq, or past 'sent' with none in flight),
-- as one delayed on a socket the client had already left. Its pending went out in that
-- delta, and what is stored (kept consistent by ingest.lua) is newer than its report.
-- The breakdown replaces the previous one (a heartbeat without one clears it) and is cut to
-- fit held (entries in order, the one crossing held trimmed, the rest dropped): that only
-- happens at the cap, or for a merged breakdown whose in-flight delta was accepted before
-- this heartbeat (which entries were its own is not known then, so only the attribution of
-- the trimmed part is approximate).
local function I(n) return string.format('%d', n) end
-- #include breakdown
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no_boss', 0, ''} end
local shard = ARGV[1]
local sess = ARGV[6]
local last = tonumber(redis.call('HGET', KEYS[2], sess) or '0')
local settled = redis.call('HGET', KEYS[3], sess)
if settled then return {'fenced', last, settled, redis.call('HGET', KEYS[9], sess) or ''} end
local floor = tonumber(redis.call('HGET', KEYS[4], shard) or '0')
if tonumber(ARGV[2]) < floor then return {'fenced', last, 'retired'} end
local held = tonumber(ARGV[3])
local base = last + 1
local iseq = tonumber(ARGV[4])
if iseq > last then
  held = held + tonumber(ARGV[5])
  base = iseq
end
-- What a crash saga may settle for one session is capped like one delta (ARGV 7): a fair
-- settlement then never applies more than a shard could have sent, and sums stay exact.
local cap = tonumber(ARGV[7])
if held > cap then held = cap end
local sent = tonumber(ARGV[8])
if sent >= 0 and last > (iseq > 0 and iseq or sent) then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[5], sess, I(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
  local stored, sum = redis.call('HGET', KEYS[9], sess), 0
  if stored then
    local list = cjson.decode(stored)
    for i = 2, #list, 2 do sum = sum + list[i] end
  end
  return {'ok', last, tonumber(redis.call('HGET', KEYS[6], sess) or '0'),
    tonumber(redis.call('HGET', KEYS[8], sess) or '0'), sum}
end
local given = {}
local split = 10 + 2 * tonumber(ARGV[9])
for i = 10, split - 1, 2 do
  given[#given + 1] = ARGV[i]
  given[#given + 1] = ARGV[i + 1]
end
if iseq > last then  -- the in-flight delta's players, merged into the pending part
  local at = {}
  for i = 1, #given, 2 do at[given[i]] = i end
  for i = split, #ARGV, 2 do
    local j = at[ARGV[i]]
    if j then
      given[j + 1] = tonumber(given[j + 1]) + tonumber(ARGV[i + 1])
    else
      given[#given + 1] = ARGV[i]
      given[#given + 1] = ARGV[i + 1]
      at[ARGV[i]] = #given - 1
    end
  end
end
local by, attributed = fit(given, held)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[5], sess, I(now))
redis.call('HSET', KEYS[6], sess, I(held))
redis.call('HSET', KEYS[7], sess, I(base))
if #by > 0 then
  redis.call('HSET', KEYS[9], sess, encode(by))
else
  redis.call('HDEL', KEYS[9], sess)
end
return {'ok', last, held, tonumber(redis.call('HGET', KEYS[8], sess) or '0'), attributed}
