-- release: end a hold and give its units back.
-- KEYS[1] meta.  ARGV: id, customer ('' = any, for admins and the service), reason,
--   onlyConfirming ('1': the service, having checked PostgreSQL, ends a CONFIRMING hold; '0': a
--   customer or admin ends a HELD one).
-- Returns {'OK', ended} | {'REJ', code, ended}. A CONFIRMING hold is never released by a customer
-- or admin (RESERVATION_NOT_HELD): its order may be committed already.
local id, cust, reason, onlyConfirming = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
if not meta_exists() then return {'REJ', 'NO_SALE', {}} end
local ended = expire_overdue(50)
local h = hold_get(id)
if not h or (cust ~= '' and h.cust ~= cust) then return {'REJ', 'RESERVATION_NOT_FOUND', ended} end
if h.status == 'EXPIRED' then return {'REJ', 'RESERVATION_EXPIRED', ended} end
if not end_hold(id, 'RELEASED', reason, onlyConfirming and 'CONFIRMING' or 'HELD') then return {'REJ', 'RESERVATION_NOT_HELD', ended} end
return {'OK', ended}
