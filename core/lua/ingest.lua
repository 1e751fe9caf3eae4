-- Accept one shard delta exactly once per (shard, epoch, seq).
-- KEYS: 1 state, 2 buf, 3 seq, 4 settled, 5 floor, 6 hb, 7 held, 8 hbase, 9 contrib,
--       10 pbuf (per-player damage until the tick moves it to players), 11 the bucket's dirty set,
--       12 heldby (session -> per-player part of held, JSON, heartbeat.lua)
-- ARGV: 1 shard, 2 epoch, 3 seq, 4 amount, 5 session field (core/keys.py session_id),
--       6 boss id, 7.. pairs (player, amount) of the breakdown
-- Returns {code, last_seq, detail}:
--   ok       accepted now (last_seq = this seq)
--   dup      seq <= last accepted: already accepted, nothing changes (the caller acks it)
--   gap      seq > last + 1: refused, nothing changes (resend in order)
--   fenced   the session was settled by a crash saga (detail '<policy>:<amount>'; a 4th
--            item: what a fair one credited, heldby's JSON or '') or the shard was retired
--            (detail 'retired'); nothing changes
--   not_live the boss is not live (detail: status); nothing changes, except that on a boss
--            that is over (defeated, expired) the session's held report is cleared: what it
--            held can never count any more, so no crash saga may settle it as credit
--   no_boss  the boss has no authority (never went live, or was reset)
-- The checks come before any write, so a refused delta changes nothing (but the held report
-- of a not_live refusal after the end).
local function I(n) return string.format('%d', n) end
-- #include breakdown
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'no_boss', 0, ''} end
local shard = ARGV[1]
local epoch = tonumber(ARGV[2])
local seq = tonumber(ARGV[3])
local amount = tonumber(ARGV[4])
local sess = ARGV[5]
local last = tonumber(redis.call('HGET', KEYS[3], sess) or '0')
local settled = redis.call('HGET', KEYS[4], sess)
if settled then return {'fenced', last, settled, redis.call('HGET', KEYS[12], sess) or ''} end
local floor = tonumber(redis.call('HGET', KEYS[5], shard) or '0')
if epoch < floor then return {'fenced', last, 'retired'} end
if seq <= last then return {'dup', last, ''} end
if status ~= 'live' then
  if status == 'defeated' or status == 'expired' then
    redis.call('HDEL', KEYS[7], sess)
    redis.call('HDEL', KEYS[8], sess)
    redis.call('HDEL', KEYS[12], sess)
  end
  return {'not_live', last, status}
end
if seq ~= last + 1 then return {'gap', last, ''} end

-- What the last heartbeat reported as held shrinks by what this delta carries, so a
-- crash saga never re-applies damage that arrived after the heartbeat; its breakdown loses
-- this delta's players' damage, then is cut to fit the smaller held (heartbeat.lua's rule).
-- Worked out before the first write: decoding can fail, and Redis keeps a failed script's
-- earlier writes.
local new_held, new_by
local held = redis.call('HGET', KEYS[7], sess)
if held and seq >= tonumber(redis.call('HGET', KEYS[8], sess) or '0') then
  new_held = tonumber(held) - amount
  if new_held < 0 then new_held = 0 end
  local raw = redis.call('HGET', KEYS[12], sess)
  if raw then
    new_by = ''
    if new_held > 0 then
      local minus = {}
      for i = 7, #ARGV, 2 do minus[ARGV[i]] = (minus[ARGV[i]] or 0) + tonumber(ARGV[i + 1]) end
      local list = cjson.decode(raw)
      for i = 1, #list, 2 do list[i + 1] = list[i + 1] - (minus[list[i]] or 0) end
      local by = fit(list, new_held)
      if #by > 0 then new_by = encode(by) end
    end
  end
end

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
if new_held then redis.call('HSET', KEYS[7], sess, I(new_held)) end
if new_by == '' then
  redis.call('HDEL', KEYS[12], sess)
elseif new_by then
  redis.call('HSET', KEYS[12], sess, new_by)
end
return {'ok', seq, ''}
