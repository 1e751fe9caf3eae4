-- Fence a shard session (crash saga): retire its epoch and settle its last known buffer.
-- KEYS: 1 state, 2 buf, 3 seq, 4 settled, 5 held, 6 hbase, 7 contrib, 8 the bucket's dirty set
-- ARGV: 1 shard, 2 epoch, 3 policy ('fair' applies the held damage at the next tick,
--       'harsh' records it as discarded), 4 session field, 5 the buffer field its recovered
--       damage goes to (both named by core/keys.py, which owns every key and field layout),
--       6 boss id
-- Returns {'fenced', '<policy>:<amount>', last_seq} the first time, {'already', same,
-- last_seq} on a re-run (idempotent), {'no_boss'} without an authority.
local function I(n) return string.format('%d', n) end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no_boss'} end
local sess = ARGV[4]
local last = tonumber(redis.call('HGET', KEYS[3], sess) or '0')
local prior = redis.call('HGET', KEYS[4], sess)
if prior then return {'already', prior, last} end
local held = tonumber(redis.call('HGET', KEYS[5], sess) or '0')
local policy = ARGV[3]
if policy == 'fair' then
  if held > 0 then
    redis.call('HINCRBY', KEYS[2], ARGV[5], I(held))
    redis.call('HINCRBY', KEYS[1], 'accepted', I(held))
    redis.call('HINCRBY', KEYS[1], 'recovered', I(held))
    redis.call('HINCRBY', KEYS[7], ARGV[1], I(held))
    redis.call('SADD', KEYS[8], ARGV[6])  -- the next tick applies it
  end
else
  redis.call('HINCRBY', KEYS[1], 'discarded', I(held))
end
local record = policy .. ':' .. I(held)
redis.call('HSET', KEYS[4], sess, record)
redis.call('HDEL', KEYS[5], sess)
redis.call('HDEL', KEYS[6], sess)
return {'fenced', record, last}
