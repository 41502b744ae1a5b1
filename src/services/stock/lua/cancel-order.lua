-- cancel-order: the units of a cancelled (CONFIRMED) order go back to available, once.
-- KEYS[1] meta.  ARGV: id (reservation of the order), orderId.
-- Returns {'OK', ver, ended} | {'REJ', code, ended}; ORDER_NOT_CANCELLABLE when the hold is not
-- CONFIRMED in this epoch (the service confirms a CONFIRMING one first, from PostgreSQL).
local id, orderId = ARGV[1], ARGV[2]
if not meta_exists() then return {'REJ', 'NO_SALE', {}} end
local ended = expire_overdue(50)
local rk = base .. 'res:' .. id
local h = hold_get(id)
if not h or h.status ~= 'CONFIRMED' or h.order ~= orderId then return {'REJ', 'ORDER_NOT_CANCELLABLE', ended} end
if h.cancelled == '1' then return {'REJ', 'ORDER_NOT_CANCELLABLE', ended} end
local item, cust, qty = h.item, h.cust, h.qty
redis.call('HSET', rk, 'cancelled', '1')
redis.call('PEXPIRE', rk, RETAIN_MS)
redis.call('HINCRBY', K_STOCK, item .. ':s', -qty)
add_usage(item, cust, -qty)
local after = add_available(item, qty)
outbox(item, 'CANCELLED', qty, after, cust, id, orderId)
serve_waitlist(item)
return {'OK', redis.call('HGET', K_META, 'ver'), ended}
