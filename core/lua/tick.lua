-- The sync tick of one boss: drain every buffer, apply the total, log, bump the version.
-- KEYS: 1 state, 2 buf, 3 log, 4 the bucket's dirty set, 5 seq, 6 pbuf, 7 players,
--       8 the bucket's unarchived set (the boss joins it with its log entry)
-- ARGV: 1 '1' to ignore the boss's minimum tick interval (state field min_tick_ms), 2 boss id
-- Returns {'applied', version, hp, applied, overkill, old_phase, phase, defeated(0/1),
--          ts_ms, phase_name, status, max_hp, slug, gen, mitigated, damage_taken_bp, healed,
--          regen_per_s}
--          or {'idle'|'early', version, status} or {'no_boss'}.
-- Damage-taken multiplier (docs/liveops.md, "Mechanics"): the phase the boss is in when the
-- tick starts (phases entry [at_hp, name, bp]; the opening phase and an entry without a third
-- element take 10000 bp) counts floor(total * bp / 10000) of the drained total, computed as
-- q * bp + floor(r * bp / 10000) with total = q * 10000 + r so that no intermediate leaves
-- the doubles' exact integers; the remainder is 'mitigated' (state field and log entry).
-- Regeneration (the fourth element of a phases entry, HP per second, of the phase at the
-- tick's start) comes first: rate x (now - regen_ms) + regen_carry thousandths of HP, the
-- whole HP healed up to max_hp - hp ('healed'), the thousandths carried (none once capped);
-- then the damage applies to the healed HP. A boss with regeneration and hp below max_hp
-- stays in its bucket's dirty set, so it heals without damage too (a tick with nothing
-- drained and nothing healed stays idle and writes nothing). The log entry records 'healed',
-- 'el' (the elapsed ms), 'rc0' (the carry it started from) and 'rg' (the rate).
-- The log entry carries what a restore from the SQL archive needs (docs/durability.md):
-- 'd' per-session damage, 's' each drained session's last accepted seq (every seq up to it
-- is in this or an earlier entry: ingest adds to the buffer and the seq in one step), 'p'
-- per-player damage drained from pbuf into players; each one JSON written by json_int_object
-- (lib/json.lua: keys through cjson.encode, never pasted into the text).
-- Drain and apply are one atomic step: a re-run tick finds the buffers empty, so no
-- delta is ever applied twice, and a skipped tick leaves everything for the next one.
-- The boss leaves its bucket's dirty set here only while live: once drained (unless this
-- tick killed it) or found empty. A paused boss keeps its mark (its buffer waits for
-- resume); a defeated, ended or reset one is unmarked by the caller after its follow-up
-- (victory saga enqueued, live set left), so a caller that dies first is retried.
local function I(n) return string.format('%d', n) end
-- #include json
local s = redis.call('HMGET', KEYS[1], 'status', 'hp', 'version', 'phase', 'phases',
  'last_tick_ms', 'opening', 'min_tick_ms', 'max_hp', 'slug', 'gen', 'regen_ms', 'regen_carry')
local status = s[1]
if not status then return {'no_boss'} end
if status ~= 'live' then return {'idle', s[3], status} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '1' and now - tonumber(s[6]) < tonumber(s[8] or '0') then return {'early', s[3], status} end
-- Everything that can fail (a damaged phases field) comes before the first write: Redis does
-- not undo a script's writes when it fails half way, and a deleted buffer would be lost.
local thresholds = cjson.decode(s[5])
local function mechanic(index, at, default)
  local p = thresholds[index]
  if p and p[at] then return tonumber(p[at]) end
  return default
end
local hp = tonumber(s[2])
local max_hp = tonumber(s[9])
local old_phase = tonumber(s[4])
local rate = mechanic(old_phase, 4, 0)
local elapsed = math.max(0, now - tonumber(s[12] or s[6]))
local carry0 = tonumber(s[13] or '0')
local milli = rate * elapsed + carry0
local whole = math.floor(milli / 1000)
local healed = math.min(whole, max_hp - hp)
local carry = milli - whole * 1000
if rate == 0 or whole > healed then carry = 0 end
local entries = redis.call('HGETALL', KEYS[2])
if #entries == 0 and healed == 0 then
  if rate == 0 or hp >= max_hp then redis.call('SREM', KEYS[4], ARGV[2]) end
  return {'idle', s[3], status}
end
if #entries > 0 then redis.call('DEL', KEYS[2]) end

local total = 0
local sessions = {}
for i = 1, #entries, 2 do
  total = total + tonumber(entries[i + 1])
  if not string.find(entries[i], '#', 1, true) then sessions[#sessions + 1] = entries[i] end
end
local seqs = {}
if #sessions > 0 then
  local last = redis.call('HMGET', KEYS[5], unpack(sessions))
  for i, sess in ipairs(sessions) do
    seqs[#seqs + 1] = sess
    seqs[#seqs + 1] = last[i] or '0'
  end
end
-- Per-player damage moves from pbuf to players with the tick, so the log can rebuild it.
local pentries = redis.call('HGETALL', KEYS[6])
if #pentries > 0 then
  redis.call('DEL', KEYS[6])
  for i = 1, #pentries, 2 do
    redis.call('HINCRBY', KEYS[7], pentries[i], pentries[i + 1])
  end
end
local bp = mechanic(old_phase, 3, 10000)
local counted = math.floor(total / 10000) * bp + math.floor((total % 10000) * bp / 10000)
local mitigated = total - counted
local applied = math.min(counted, hp + healed)
local overkill = counted - applied
local new_hp = hp + healed - applied
local version = tonumber(s[3]) + 1
local phase = 0
local phase_name = s[7]
for i, p in ipairs(thresholds) do
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
elseif mechanic(phase, 4, 0) == 0 or new_hp >= max_hp then
  redis.call('SREM', KEYS[4], ARGV[2])
end
local new_bp = mechanic(phase, 3, 10000)
local new_rate = mechanic(phase, 4, 0)
redis.call('HSET', KEYS[1], 'hp', I(new_hp), 'version', I(version), 'phase', phase,
  'phase_name', phase_name, 'damage_taken_bp', I(new_bp), 'status', new_status,
  'last_tick_ms', I(now), 'changed_ms', I(now), 'regen_ms', I(now), 'regen_carry', I(carry),
  'regen_per_s', I(new_rate))
redis.call('HINCRBY', KEYS[1], 'applied', I(applied))
if overkill > 0 then redis.call('HINCRBY', KEYS[1], 'overkill', I(overkill)) end
if mitigated > 0 then redis.call('HINCRBY', KEYS[1], 'mitigated', I(mitigated)) end
if healed > 0 then redis.call('HINCRBY', KEYS[1], 'healed', I(healed)) end
if defeated == 1 then redis.call('HSET', KEYS[1], 'defeated_ms', I(now)) end
redis.call('XADD', KEYS[3], I(version) .. '-1', 'v', I(version), 'kind', 'tick',
  'status', new_status, 'hp', I(new_hp), 'applied', I(applied), 'overkill', I(overkill),
  'mitigated', I(mitigated), 'bp', I(bp), 'healed', I(healed), 'el', I(elapsed), 'rc0', I(carry0),
  'rg', I(rate), 'd', json_int_object(entries), 'ts', I(now),
  's', json_int_object(seqs), 'p', json_int_object(pentries))
redis.call('SADD', KEYS[8], ARGV[2])
return {'applied', version, new_hp, applied, overkill, old_phase, phase, defeated, now,
  phase_name, new_status, s[9], s[10], s[11] or '0', mitigated, new_bp,
  healed, new_rate}
