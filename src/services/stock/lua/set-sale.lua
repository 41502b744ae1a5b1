-- set-sale: change a sale's window, limits or admin state. Cancelling releases every HELD hold
-- (CONFIRMING ones finish or are resolved against PostgreSQL).
-- KEYS[1] meta.  ARGV: field, value pairs (start, end, limit, hold, state).
-- Returns {'OK', ended} | {'REJ', 'NO_SALE', {}}
if not meta_exists() then return {'REJ', 'NO_SALE', {}} end
local ended = expire_overdue(1000)
for i = 1, #ARGV, 2 do redis.call('HSET', K_META, ARGV[i], ARGV[i + 1]) end
redis.call('HINCRBY', K_META, 'ver', 1)
if redis.call('HGET', K_META, 'state') == 'CANCELLED' then
  local ids = redis.call('ZRANGE', K_HOLDS, 0, -1)
  for _, id in ipairs(ids) do end_hold(id, 'RELEASED', 'SALE_CANCELLED', 'HELD') end
end
return {'OK', ended}
