-- waitlist-leave: a customer leaves an item's waitlist; an OFFERED entry's hold is released and
-- offered to the next entry in the same step.
-- KEYS[1] meta.  ARGV: item, customer.
-- Returns {'OK', changed} | {'REJ', code, changed}; RESERVATION_NOT_HELD while the offer is being
-- confirmed (its order may be committing).
local item, cust = ARGV[1], ARGV[2]
if not meta_exists() then return {'REJ', 'NO_SALE', {}} end
local changed = expire_overdue(50)
local e = wl_get(item, cust)
if not e or (e.status ~= 'WAITING' and e.status ~= 'OFFERED') then return {'REJ', 'NOT_ON_WAITLIST', changed} end
if e.status == 'WAITING' then
  redis.call('ZREM', base .. 'wlq:' .. item, cust)
  e.status = 'LEFT'
  wl_set(item, cust, e)
elseif not end_hold(e.offer, 'RELEASED', 'CUSTOMER', 'HELD') then
  return {'REJ', 'RESERVATION_NOT_HELD', changed}
end
return {'OK', changed}
