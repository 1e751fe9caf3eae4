-- Rebuild a boss's authority from the SQL archive (restore saga, docs/durability.md).
-- KEYS: 1 state, 2 buf, 3 seq, 4 settled, 5 floor, 6 hb, 7 held, 8 hbase, 9 contrib, 10 pbuf,
--       11 players, 12 archived, 13 log, 14 the bucket's dirty set, 15 the bucket's
--       unarchived set (the boss joins it: its log starts again)
-- ARGV: 1 incarnation of the fight being restored, 2 generation being written, 3 boss id,
--       4 JSON snapshot {state: {field: value}, seq, settled, floor, contrib, players, buf:
--       {field: value}, first: [entry fields] or []} (every value a string: cjson reads
--       numbers as doubles, which would round big ones)
-- Returns {'restored', version} or {'already', version} when this generation is already in
-- place (a resumed saga), or {'foreign', incarnation} for another database's authority.
-- Everything of the boss is replaced in one atomic step: a half-restored authority is never
-- seen. The fight comes back with status 'recovering' (every delta is refused as not live, so
-- clients keep and re-send) until the saga's last step reopens it.
local st = redis.call('HMGET', KEYS[1], 'incarnation', 'gen', 'version')
if st[1] and st[1] ~= '' and st[1] ~= ARGV[1] then return {'foreign', st[1]} end
if st[2] == ARGV[2] then return {'already', st[3]} end
local snap = cjson.decode(ARGV[4])
for i = 1, 13 do redis.call('DEL', KEYS[i]) end
local function put(key, map)
  local flat = {}
  for k, v in pairs(map) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  if #flat > 0 then redis.call('HSET', key, unpack(flat)) end
end
put(KEYS[1], snap.state)
put(KEYS[2], snap.buf)
put(KEYS[3], snap.seq)
put(KEYS[4], snap.settled)
put(KEYS[5], snap.floor)
put(KEYS[9], snap.contrib)
put(KEYS[11], snap.players)
put(KEYS[12], snap.seq)  -- every restored seq is in the archive: durable
if #snap.first > 0 then
  redis.call('XADD', KEYS[13], '1-1', unpack(snap.first))
end
if next(snap.buf) ~= nil then redis.call('SADD', KEYS[14], ARGV[3]) end
redis.call('SADD', KEYS[15], ARGV[3])
return {'restored', snap.state.version}
