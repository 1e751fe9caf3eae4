-- Change a boss's status (pause, resume, end/expire) with a version bump and a log entry.
-- KEYS: 1 state, 2 log, 3 the bucket's unarchived set (the boss joins it with its log entry)
-- ARGV: 1 new status, 2 boss id, 3.. statuses it may come from
-- Returns {'ok', status, version} or {'refused', current status, version} or {'no_boss'}.
local function I(n) return string.format('%d', n) end
local s = redis.call('HMGET', KEYS[1], 'status', 'version', 'hp')
if not s[1] then return {'no_boss'} end
local allowed = false
for i = 3, #ARGV do
  if ARGV[i] == s[1] then allowed = true end
end
if not allowed then return {'refused', s[1], s[2]} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local version = tonumber(s[2]) + 1
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'version', I(version), 'changed_ms', I(now))
-- Regeneration runs while live only: a resume restarts its clock (tick.lua).
if ARGV[1] == 'live' then redis.call('HSET', KEYS[1], 'regen_ms', I(now)) end
redis.call('XADD', KEYS[2], I(version) .. '-1', 'v', I(version), 'kind', 'status',
  'status', ARGV[1], 'hp', s[3], 'applied', 0, 'overkill', 0, 'd', '{}', 'ts', I(now))
redis.call('SADD', KEYS[3], ARGV[2])
return {'ok', ARGV[1], version}
