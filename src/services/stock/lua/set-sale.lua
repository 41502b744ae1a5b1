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
  -- Nobody will be served any more: every waiting entry ends LAPSED, and its customer is told.
  for _, field in ipairs(redis.call('HKEYS', K_STOCK)) do
    local item = string.match(field, '^(.*):a$')
    if item then
      local wq = base .. 'wlq:' .. item
      for _, cust in ipairs(redis.call('ZRANGE', wq, 0, -1)) do
        local e = wl_get(item, cust)
        if e then
          e.status = 'LAPSED'
          wl_set(item, cust, e)
          CHANGED[#CHANGED + 1] = '|' .. item .. '|' .. e.qty .. '|LAPSED|SALE_CANCELLED|1|' .. cust
        end
      end
      redis.call('DEL', wq)
    end
  end
end
return {'OK', CHANGED}
