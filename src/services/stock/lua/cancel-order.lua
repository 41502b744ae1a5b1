-- cancel-order: the units of a cancelled (CONFIRMED) order go back to available, once.
-- KEYS[1] meta.  ARGV: id (reservation of the order), orderId.
-- Returns {'OK', ver, ended} | {'REJ', code, ended}
local id, orderId = ARGV[1], ARGV[2]
if not meta_exists() then return {'REJ', 'NO_SALE', {}} end
local ended = expire_overdue(50)
local rk = base .. 'res:' .. id
local r = redis.call('HMGET', rk, 'item', 'cust', 'qty', 'status', 'cancelled')
if r[4] ~= 'CONFIRMED' then return {'REJ', 'ORDER_NOT_CANCELLABLE', ended} end
if r[5] == '1' then return {'REJ', 'ORDER_NOT_CANCELLABLE', ended} end
local item, cust, qty = r[1], r[2], tonumber(r[3])
redis.call('HSET', rk, 'cancelled', '1')
redis.call('HINCRBY', K_STOCK, item .. ':s', -qty)
add_usage(item, cust, -qty)
local after = add_available(item, qty)
outbox(item, 'CANCELLED', qty, after, cust, id, orderId)
serve_waitlist(item)
return {'OK', redis.call('HGET', K_META, 'ver'), ended}
