-- confirm: a CONFIRMING hold whose order row is committed becomes CONFIRMED (sold).
-- KEYS[1] meta.  ARGV: id, orderId.
-- Returns {'OK', ver} | {'ALREADY', orderId} | {'GONE', status}
local id, orderId = ARGV[1], ARGV[2]
local rk = base .. 'res:' .. id
local r = redis.call('HMGET', rk, 'item', 'cust', 'qty', 'status', 'order', 'wl')
if r[4] == 'CONFIRMED' then return {'ALREADY', r[5]} end
if r[4] ~= 'CONFIRMING' then return {'GONE', r[4] or 'MISSING'} end
local item, qty = r[1], tonumber(r[3])
redis.call('HSET', rk, 'status', 'CONFIRMED', 'order', orderId, 'ended', NOW)
redis.call('ZREM', K_CONF, id)
redis.call('HINCRBY', K_STOCK, item .. ':r', -qty)
redis.call('HINCRBY', K_STOCK, item .. ':s', qty)
local ver = redis.call('HINCRBY', K_META, 'ver', 1)
local after = tonumber(redis.call('HGET', K_STOCK, item .. ':a'))
outbox(item, 'CONFIRMED', 0, after, r[2], id, orderId)
if r[6] == '1' then
  local e = wl_get(item, r[2])
  if e and e.offer == id then
    e.status = 'FULFILLED'
    wl_set(item, r[2], e)
  end
end
return {'OK', ver}
