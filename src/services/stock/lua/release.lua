-- release: end a HELD or CONFIRMING hold and give its units back.
-- KEYS[1] meta.  ARGV: id, customer ('' = any, for admins and the service), reason, onlyConfirming ('1'|'0').
-- Returns {'OK', ended} | {'REJ', code, ended}
local id, cust, reason, onlyConfirming = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
if not meta_exists() then return {'REJ', 'NO_SALE', {}} end
local ended = expire_overdue(50)
local rk = base .. 'res:' .. id
local r = redis.call('HMGET', rk, 'cust', 'status')
if not r[1] or (cust ~= '' and r[1] ~= cust) then return {'REJ', 'RESERVATION_NOT_FOUND', ended} end
if r[2] == 'EXPIRED' then return {'REJ', 'RESERVATION_EXPIRED', ended} end
if onlyConfirming and r[2] ~= 'CONFIRMING' then return {'REJ', 'RESERVATION_NOT_HELD', ended} end
if not end_hold(id, 'RELEASED', reason) then return {'REJ', 'RESERVATION_NOT_HELD', ended} end
return {'OK', ended}
