-- outbox-read: the oldest outbox entries and the current state of every hold they name, so the
-- ledger drainer copies both with one call instead of one more per hold.
-- KEYS[1] meta.  ARGV: count, [first id, inclusive or "(" exclusive; default "-"], [last id; default "+"].
-- Returns {entries, holds}: entries as XRANGE gives them; holds as {id, HGETALL of the hold}
-- for each named hold that still exists, each once.
local entries = redis.call('XRANGE', K_OUTBOX, ARGV[2] or '-', ARGV[3] or '+', 'COUNT', tonumber(ARGV[1]))
local seen, holds = {}, {}
for _, e in ipairs(entries) do
  local f = e[2]
  for i = 1, #f, 2 do
    if f[i] == 'r' then
      local id = f[i + 1]
      if id ~= '' and not seen[id] then
        seen[id] = true
        local h = redis.call('HGETALL', base .. 'res:' .. id)
        if #h > 0 then holds[#holds + 1] = {id, h} end
      end
    end
  end
end
return {entries, holds}
