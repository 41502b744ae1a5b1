-- begin-confirm: move a customer's HELD hold into CONFIRMING while its order is committed.
-- KEYS[1] meta.  ARGV: id, customer, confirmWindowMs.
-- Returns {'OK', deadline, ended, epoch, ver} | {'REJ', code, ended} | {'CONFIRMED', orderId, ended}
-- A CONFIRMING hold no longer expires by the clock: the service resolves it against PostgreSQL
-- after its deadline (order found: confirmed; none: released), so a committed order never loses
-- its units to expiry. A cancelled or ended sale confirms nothing.
local id, cust, window = ARGV[1], ARGV[2], tonumber(ARGV[3])
if not meta_exists() then return {'REJ', 'NO_SALE', {}} end
local ended = expire_overdue(50)
local h = hold_get(id)
if not h or h.cust ~= cust then return {'REJ', 'RESERVATION_NOT_FOUND', ended} end
if h.status == 'CONFIRMED' then return {'CONFIRMED', h.order, ended} end
if h.status == 'EXPIRED' then return {'REJ', 'RESERVATION_EXPIRED', ended} end
if h.status ~= 'HELD' then return {'REJ', 'RESERVATION_NOT_HELD', ended} end
local m = redis.call('HMGET', K_META, 'state', 'end')
if m[1] == 'CANCELLED' then return {'REJ', 'SALE_CANCELLED', ended} end
if NOW >= tonumber(m[2]) then return {'REJ', 'SALE_ENDED', ended} end
move_hold(h, 'HELD', 'CONFIRMING')
local deadline = NOW + window
redis.call('HSET', base .. 'res:' .. id, 'status', 'CONFIRMING')
redis.call('ZREM', K_HOLDS, id)
redis.call('ZADD', K_CONF, deadline, id)
return {'OK', deadline, ended, EPOCH, redis.call('HGET', K_META, 'ver')}
