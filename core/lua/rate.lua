-- The hosted shard's player rate limit, shared by every ASGI process (GCRA).
-- KEYS: one per attack, the player's key on this boss (core/keys.py BossKeys.rate), all on
--       the boss's hash tag; a player may appear more than once in a batch, each
--       attack is then judged after the one before it
-- ARGV: 1 emission interval in us (1e6 / attacks_per_second), 2 burst (attacks allowed at
--       once: the boss's attacks_per_second, as the per-process bucket allowed)
-- Returns one integer per key: 0 = allowed, else the ms to wait before one would pass.
-- GCRA keeps one number per player, the theoretical arrival time (tat): an attack passes
-- when tat + interval - now <= burst * interval, and moves tat on by one interval. The key
-- expires when tat is reached: by then a fresh key means the same, so an idle player
-- costs no memory. Redis TIME, not the callers' clocks: every process sees one clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit = interval * tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new = tat + interval
  if new - now > limit then
    out[i] = math.floor((new - now - limit) / 1000) + 1
  else
    redis.call('SET', key, string.format('%d', new), 'PX', math.floor((new - now) / 1000) + 1)
    out[i] = 0
  end
end
return out
