-- confirm: a CONFIRMING hold whose order row is committed becomes CONFIRMED (sold).
-- KEYS[1] meta.  ARGV: id, orderId.
-- Returns {'OK', ver, wl} | {'ALREADY', orderId} | {'GONE', status} | {'REJ', 'NO_SALE'}
-- Never refuses a committed order for the sale's state: PostgreSQL refused orders of a cancelled
-- sale already, and one committed before the cancel is sold.
local id, orderId = ARGV[1], ARGV[2]
if not meta_exists() then return {'REJ', 'NO_SALE'} end
local h = hold_get(id)
if h and h.status == 'CONFIRMED' then return {'ALREADY', h.order} end
if not move_hold(h, 'CONFIRMING', 'CONFIRMED') then return {'GONE', h and h.status or 'MISSING'} end
local item, qty = h.item, h.qty
redis.call('HSET', base .. 'res:' .. id, 'status', 'CONFIRMED', 'order', orderId, 'ended', NOW)
redis.call('PEXPIREAT', base .. 'res:' .. id, keep_until())
redis.call('ZREM', K_CONF, id)
redis.call('HINCRBY', K_STOCK, item .. ':r', -qty)
redis.call('HINCRBY', K_STOCK, item .. ':s', qty)
local ver = redis.call('HINCRBY', K_META, 'ver', 1)
local after = tonumber(redis.call('HGET', K_STOCK, item .. ':a'))
outbox(item, 'CONFIRMED', 0, after, h.cust, id, orderId)
if h.wl == '1' then
  local e = wl_get(item, h.cust)
  if e and e.offer == id then
    e.status = 'FULFILLED'
    wl_set(item, h.cust, e)
  end
end
return {'OK', ver, h.wl or '0'}
