-- Record a shard session's sign of life and what it still holds unacknowledged.
-- KEYS: 1 state, 2 seq, 3 settled, 4 floor, 5 hb, 6 held, 7 hbase, 8 archived,
--       9 heldby (session -> per-player part of held, JSON ["<player>",<damage>,...])
-- ARGV: 1 shard, 2 epoch, 3 pending (local buffer not yet in any delta),
--       4 in-flight seq (0: none), 5 in-flight amount, 6 session field (core/keys.py
--       session_id), 7 the most a session may hold (core/limits.py MAX_HELD_AMOUNT),
--       8.. pairs (player, damage) of the held breakdown (validated: positive whole
--       numbers, at most MAX_BREAKDOWN_ENTRIES, sum <= pending + in-flight amount)
-- Returns {'ok', last_seq, held, durable_seq, attributed} or {'fenced', last_seq, detail} or
-- {'no_boss', 0, ''}; durable_seq: the session's highest seq in the SQL archive (the
-- archive writes it), so a client may stop keeping deltas up to it; attributed: the sum of
-- the breakdown stored with held (<= held).
-- The in-flight delta counts as held only if it was not accepted yet; later accepted
-- deltas shrink 'held' again (ingest.lua), so a crash saga recovers exactly the damage
-- the platform knows of and never accepted.
-- The breakdown replaces the previous one (a heartbeat without one clears it) and is cut to
-- fit held: entries in order, the one crossing held trimmed, the rest dropped. That covers
-- the cap and an in-flight delta accepted before this heartbeat (its players were credited
-- by ingest.lua; which entries were its own is not known here, so the total stays exact and
-- only the attribution of the trimmed part is approximate).
local function I(n) return string.format('%d', n) end
-- #include breakdown
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no_boss', 0, ''} end
local shard = ARGV[1]
local sess = ARGV[6]
local last = tonumber(redis.call('HGET', KEYS[2], sess) or '0')
local settled = redis.call('HGET', KEYS[3], sess)
if settled then return {'fenced', last, settled} end
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
local given = {}
for i = 8, #ARGV, 2 do
  given[#given + 1] = ARGV[i]
  given[#given + 1] = ARGV[i + 1]
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
