-- The hosted shard's player rate limit, shared by every ASGI process (GCRA), and the boss's
-- cap on distinct player ids.
-- KEYS: one per attack, the player's key on this boss (core/keys.py BossKeys.rate), all on
--       the boss's hash tag; a player may appear more than once in a batch, each
--       attack is then judged after the one before it. With a cap (ARGV[3] > 0) one more,
--       last: the boss's roster (SET of the player ids attacks were accepted from)
-- ARGV: 1 emission interval in us (1e6 / attacks_per_second), 2 burst (attacks allowed at
--       once: the boss's attacks_per_second, as the per-process bucket allowed), 3 the cap
--       on distinct player ids (0: none), 4.. with a cap, the player id of each attack
-- Returns one integer per attack: 0 = allowed, -1 = a new player id while the roster is
-- full (nothing written), else the ms to wait before one would pass.
-- GCRA keeps one number per player, the theoretical arrival time (tat): an attack passes
-- when tat + interval - now <= burst * interval, and moves tat on by one interval. The key
-- expires when tat is reached: by then a fresh key means the same, so an idle player
-- costs no memory. Redis TIME, not the callers' clocks: every process sees one clock.
-- The roster check and the SADD of an allowed attack are one atomic step: the cap holds
-- across every process, and a player already in it is never refused for it.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit = interval * tonumber(ARGV[2])
local cap = tonumber(ARGV[3] or '0')
local n = #KEYS
local roster
if cap > 0 then
  n = n - 1
  roster = KEYS[n + 1]
end
local out = {}
for i = 1, n do
  local key = KEYS[i]
  local player = roster and ARGV[3 + i]
  local known = true
  if roster then
    known = redis.call('SISMEMBER', roster, player) == 1
  end
  if not known and redis.call('SCARD', roster) >= cap then
    out[i] = -1
  else
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat < now then tat = now end
    local new = tat + interval
    if new - now > limit then
      out[i] = math.floor((new - now - limit) / 1000) + 1
    else
      redis.call('SET', key, string.format('%d', new), 'PX', math.floor((new - now) / 1000) + 1)
      if not known then redis.call('SADD', roster, player) end
      out[i] = 0
    end
  end
end
return out
