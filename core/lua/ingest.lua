-- Accept one shard delta exactly once per (shard, epoch, seq).
-- KEYS: 1 state, 2 buf, 3 seq, 4 settled, 5 floor, 6 hb, 7 held, 8 hbase, 9 contrib,
--       10 pbuf (per-player damage until the tick moves it to players), 11 the bucket's dirty set
-- ARGV: 1 shard, 2 epoch, 3 seq, 4 amount, 5 session field (core/keys.py session_id),
--       6 boss id, 7.. pairs (player, amount) of the breakdown
-- Returns {code, last_seq, detail}:
--   ok       accepted now (last_seq = this seq)
--   dup      seq <= last accepted: already accepted, nothing changes (the caller acks it)
--   gap      seq > last + 1: refused, nothing changes (resend in order)
--   fenced   the session was settled by a crash saga (detail '<policy>:<amount>') or the
--            shard was retired (detail 'retired'); nothing changes
--   not_live the boss is not live (detail: status); nothing changes
--   no_boss  the boss has no authority (never went live, or was reset)
-- The checks come before any write, so a refused delta changes nothing.
local function I(n) return string.format('%d', n) end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'no_boss', 0, ''} end
local shard = ARGV[1]
local epoch = tonumber(ARGV[2])
local seq = tonumber(ARGV[3])
local amount = tonumber(ARGV[4])
local sess = ARGV[5]
local last = tonumber(redis.call('HGET', KEYS[3], sess) or '0')
local settled = redis.call('HGET', KEYS[4], sess)
if settled then return {'fenced', last, settled} end
local floor = tonumber(redis.call('HGET', KEYS[5], shard) or '0')
if epoch < floor then return {'fenced', last, 'retired'} end
if seq <= last then return {'dup', last, ''} end
if status ~= 'live' then return {'not_live', last, status} end
if seq ~= last + 1 then return {'gap', last, ''} end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[3], sess, ARGV[3])
redis.call('HSET', KEYS[6], sess, I(now))
redis.call('HINCRBY', KEYS[2], sess, ARGV[4])
redis.call('HINCRBY', KEYS[1], 'accepted', ARGV[4])
redis.call('HINCRBY', KEYS[9], shard, ARGV[4])
-- Marked in the same atomic step as the damage: the tick visits only marked bosses.
redis.call('SADD', KEYS[11], ARGV[6])
for i = 7, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[10], ARGV[i], ARGV[i + 1])
end
-- What the last heartbeat reported as held shrinks by what this delta carries, so a
-- crash saga never re-applies damage that arrived after the heartbeat.
local held = redis.call('HGET', KEYS[7], sess)
if held then
  local base = tonumber(redis.call('HGET', KEYS[8], sess) or '0')
  if seq >= base then
    local h = tonumber(held) - amount
    if h < 0 then h = 0 end
    redis.call('HSET', KEYS[7], sess, I(h))
  end
end
return {'ok', seq, ''}
