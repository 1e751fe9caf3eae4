-- Shared by heartbeat.lua, ingest.lua and fence.lua (spliced in where a script says "-- #include breakdown";
-- core/authority.py): a held breakdown is a flat list {player, amount, player, amount, ...}.

-- The breakdown cut to sum at most `limit`: entries in order, the one crossing it trimmed,
-- the rest dropped. Returns the list and its sum.
local function fit(list, limit)
  local out, sum = {}, 0
  for i = 1, #list, 2 do
    if sum >= limit then break end
    local a = tonumber(list[i + 1])
    if sum + a > limit then a = limit - sum end
    if a > 0 then
      out[#out + 1] = list[i]
      out[#out + 1] = a
      sum = sum + a
    end
  end
  return out, sum
end

-- The list as compact JSON, by cjson.encode (every player id escaped as a JSON string). The
-- amounts fit cjson's 14 significant digits exactly: each is at most MAX_HELD_AMOUNT (2^40,
-- 13 digits; fit() never raises one). An empty list is '[]' (cjson would write '{}').
local function encode(list)
  if #list == 0 then return '[]' end
  return cjson.encode(list)
end
