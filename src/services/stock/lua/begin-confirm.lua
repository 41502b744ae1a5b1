-- begin-confirm: move a customer's HELD hold into CONFIRMING while its order is committed.
-- KEYS[1] meta.  ARGV: id, customer, confirmWindowMs.
-- Returns {'OK', deadline, ended} | {'REJ', code, ended} | {'CONFIRMED', orderId, ended}
-- A CONFIRMING hold no longer expires by the clock: the service resolves it against PostgreSQL
-- after its deadline (order found: confirmed; none: released), so a committed order never loses
-- its units to expiry.
local id, cust, window = ARGV[1], ARGV[2], tonumber(ARGV[3])
if not meta_exists() then return {'REJ', 'NO_SALE', {}} end
local ended = expire_overdue(50)
local rk = base .. 'res:' .. id
local r = redis.call('HMGET', rk, 'cust', 'status', 'order', 'expires')
if not r[1] or r[1] ~= cust then return {'REJ', 'RESERVATION_NOT_FOUND', ended} end
if r[2] == 'CONFIRMED' then return {'CONFIRMED', r[3], ended} end
if r[2] == 'EXPIRED' then return {'REJ', 'RESERVATION_EXPIRED', ended} end
if r[2] ~= 'HELD' then return {'REJ', 'RESERVATION_NOT_HELD', ended} end
local deadline = NOW + window
redis.call('HSET', rk, 'status', 'CONFIRMING')
redis.call('ZREM', K_HOLDS, id)
redis.call('ZADD', K_CONF, deadline, id)
return {'OK', deadline, ended}
