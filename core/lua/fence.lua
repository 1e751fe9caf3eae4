-- Fence a shard session (crash saga): retire its epoch and settle its last known buffer.
-- KEYS: 1 state, 2 buf, 3 seq, 4 settled, 5 held, 6 hbase, 7 contrib, 8 the bucket's dirty set,
--       9 heldby (session -> per-player part of held, JSON), 10 pbuf
-- ARGV: 1 shard, 2 epoch, 3 policy ('fair' applies the held damage at the next tick,
--       'harsh' records it as discarded), 4 session field, 5 the buffer field its recovered
--       damage goes to (both named by core/keys.py, which owns every key and field layout),
--       6 boss id
-- Returns {'fenced', '<policy>:<amount>', last_seq, credited_players, credited_amount} the
-- first time, {'already', same, last_seq, same, same} on a re-run (idempotent),
-- {'no_boss'} without an authority.
-- Under 'fair' the held breakdown (heartbeat.lua, kept consistent by ingest.lua) is
-- credited to its players through pbuf, like a delta's breakdown: the tick moves it to
-- players and logs it ('p'), so rewards and a restore from the archive see it. The rest of
-- the held amount stays the shard's only. What was credited stays in heldby as the record
-- a re-run reports; 'harsh' credits nothing and clears it.
-- A boss that is over (defeated, expired) settles every session 'harsh', whatever its
-- policy: damage after the end is never accepted, recovered or credited, and a buffer on such
-- a boss would never drain (the tick skips it).
local function I(n) return string.format('%d', n) end
-- #include breakdown
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no_boss'} end
local sess = ARGV[4]
local last = tonumber(redis.call('HGET', KEYS[3], sess) or '0')
local prior = redis.call('HGET', KEYS[4], sess)
if prior then
  local done = redis.call('HGET', KEYS[9], sess)
  local n, sum = 0, 0
  if done then
    local list = cjson.decode(done)
    for i = 1, #list, 2 do
      n = n + 1
      sum = sum + list[i + 1]
    end
  end
  return {'already', prior, last, n, sum}
end
local held = tonumber(redis.call('HGET', KEYS[5], sess) or '0')
local policy = ARGV[3]
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'defeated' or status == 'expired' then policy = 'harsh' end
-- Decoded before the first write: Redis does not undo a script's writes when it fails half way.
local credit, csum = {}, 0
if policy == 'fair' and held > 0 then
  local raw = redis.call('HGET', KEYS[9], sess)
  if raw then credit, csum = fit(cjson.decode(raw), held) end
end
if policy == 'fair' then
  if held > 0 then
    redis.call('HINCRBY', KEYS[2], ARGV[5], I(held))
    redis.call('HINCRBY', KEYS[1], 'accepted', I(held))
    redis.call('HINCRBY', KEYS[1], 'recovered', I(held))
    redis.call('HINCRBY', KEYS[7], ARGV[1], I(held))
    for i = 1, #credit, 2 do
      redis.call('HINCRBY', KEYS[10], credit[i], I(credit[i + 1]))
    end
    redis.call('SADD', KEYS[8], ARGV[6])  -- the next tick applies it
  end
else
  redis.call('HINCRBY', KEYS[1], 'discarded', I(held))
end
local record = policy .. ':' .. I(held)
redis.call('HSET', KEYS[4], sess, record)
redis.call('HDEL', KEYS[5], sess)
redis.call('HDEL', KEYS[6], sess)
if #credit > 0 then
  redis.call('HSET', KEYS[9], sess, encode(credit))
else
  redis.call('HDEL', KEYS[9], sess)
end
return {'fenced', record, last, #credit / 2, csum}
