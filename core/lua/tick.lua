-- The sync tick of one boss: drain every buffer, apply the total, log, bump the version.
-- KEYS: 1 state, 2 buf, 3 log
-- ARGV: 1 '1' to ignore the boss's minimum tick interval (state field min_tick_ms)
-- Returns {'applied', version, hp, applied, overkill, old_phase, phase, defeated(0/1),
--          ts_ms, phase_name, status} or {'idle'|'early', version, status} or {'no_boss'}.
-- Drain and apply are one atomic step: a re-run tick finds the buffers empty, so no
-- delta is ever applied twice, and a skipped tick leaves everything for the next one.
local function I(n) return string.format('%d', n) end
local s = redis.call('HMGET', KEYS[1], 'status', 'hp', 'version', 'phase', 'phases',
  'last_tick_ms', 'opening', 'min_tick_ms')
local status = s[1]
if not status then return {'no_boss'} end
if status ~= 'live' then return {'idle', s[3], status} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '1' and now - tonumber(s[6]) < tonumber(s[8] or '0') then return {'early', s[3], status} end
local entries = redis.call('HGETALL', KEYS[2])
if #entries == 0 then return {'idle', s[3], status} end
redis.call('DEL', KEYS[2])

local total = 0
local parts = {}
for i = 1, #entries, 2 do
  total = total + tonumber(entries[i + 1])
  -- field names are session fields (core/keys.py: validated shard key and epoch, or the
  -- recovered twin of one): JSON-safe, tests/core/test_keys.py checks it
  parts[#parts + 1] = '"' .. entries[i] .. '":' .. entries[i + 1]
end
local hp = tonumber(s[2])
local applied = math.min(total, hp)
local overkill = total - applied
local new_hp = hp - applied
local version = tonumber(s[3]) + 1
local old_phase = tonumber(s[4])
local phase = 0
local phase_name = s[7]
for i, p in ipairs(cjson.decode(s[5])) do
  if new_hp <= p[1] then
    phase = i
    phase_name = p[2]
  end
end
local new_status = 'live'
local defeated = 0
if new_hp == 0 then
  new_status = 'defeated'
  defeated = 1
end
redis.call('HSET', KEYS[1], 'hp', I(new_hp), 'version', I(version), 'phase', phase,
  'phase_name', phase_name, 'status', new_status, 'last_tick_ms', I(now), 'changed_ms', I(now))
redis.call('HINCRBY', KEYS[1], 'applied', I(applied))
if overkill > 0 then redis.call('HINCRBY', KEYS[1], 'overkill', I(overkill)) end
if defeated == 1 then redis.call('HSET', KEYS[1], 'defeated_ms', I(now)) end
redis.call('XADD', KEYS[3], I(version) .. '-1', 'v', I(version), 'kind', 'tick',
  'status', new_status, 'hp', I(new_hp), 'applied', I(applied), 'overkill', I(overkill),
  'd', '{' .. table.concat(parts, ',') .. '}', 'ts', I(now))
return {'applied', version, new_hp, applied, overkill, old_phase, phase, defeated, now,
  phase_name, new_status}
