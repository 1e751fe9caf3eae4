-- Seed a boss's authority when it goes live (first time in this fight).
-- KEYS: 1 state, 2 log, 3 floor, 4 the bucket's unarchived set (the boss joins it with its
--       first log entry)
-- ARGV: 1 max_hp, 2 phases JSON [[at_hp, name, damage_taken_bp, regen_per_s], ...] (decreasing), 3 opening phase name,
--       4 fight, 5 slug, 6 minimum ms between applied ticks, 7 incarnation (the fight's
--       identity, kept in SQL: an authority seeded by another database or fight has another),
--       8 boss id, 9.. pairs (shard, lowest accepted epoch) for retired shards
-- Returns {'ok', version} or {'exists', status, incarnation} (never overwrites a running fight).
local function I(n) return string.format('%d', n) end
if redis.call('EXISTS', KEYS[1]) == 1 then
  local st = redis.call('HMGET', KEYS[1], 'status', 'incarnation')
  return {'exists', st[1] or '', st[2] or ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1],
  'hp', ARGV[1], 'max_hp', ARGV[1], 'version', 1, 'status', 'live',
  'phase', 0, 'phase_name', ARGV[3], 'opening', ARGV[3], 'phases', ARGV[2],
  'accepted', 0, 'applied', 0, 'overkill', 0, 'mitigated', 0, 'recovered', 0, 'discarded', 0,
  'damage_taken_bp', 10000, 'healed', 0, 'regen_per_s', 0, 'regen_ms', I(now), 'regen_carry', 0,
  'last_tick_ms', I(now), 'changed_ms', I(now), 'fight', ARGV[4], 'slug', ARGV[5], 'min_tick_ms', ARGV[6],
  'incarnation', ARGV[7])
redis.call('XADD', KEYS[2], '1-1', 'v', 1, 'kind', 'status', 'status', 'live',
  'hp', ARGV[1], 'applied', 0, 'overkill', 0, 'd', '{}', 'ts', I(now))
redis.call('SADD', KEYS[4], ARGV[8])
for i = 9, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
return {'ok', 1}
