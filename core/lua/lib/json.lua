-- JSON objects of whole numbers (core/authority.py splices this in where a script says
-- "-- #include json"). Every string is written by cjson.encode, so a key with a quote, a
-- backslash or a control character still gives valid JSON (ids are validated before they
-- reach a script, core/validation.py; this does not rely on it). The numbers are written with
-- %d: cjson.encode writes at most 14 significant digits (encode_number_precision cannot go
-- higher), which would round a seq (up to 2^53) or a tick's sum past 10^14.

-- {"<k1>":n1,"<k2>":n2,...} from a flat list {k1, n1, k2, n2, ...} (an HGETALL reply);
-- a value that is not a number is written as 0 (tonumber gives nil).
local function json_int_object(flat)
  local parts = {}
  for i = 1, #flat, 2 do
    parts[#parts + 1] = cjson.encode(tostring(flat[i])) .. ':' .. string.format('%d', tonumber(flat[i + 1]) or 0)
  end
  return '{' .. table.concat(parts, ',') .. '}'
end
