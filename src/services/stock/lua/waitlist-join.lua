-- waitlist-join: put a customer on an item's waitlist, only while the public can buy none of it.
-- KEYS[1] meta.  ARGV: item, customer, qty, admitted ('1' when the caller verified an admission
--   token of this customer for this sale; a waiting-room sale's waitlist takes only them).
-- Returns {'OK', changed} | {'REJ', code, available, changed}
-- Idempotent: the same customer and quantity keep their first place. The quantity may not exceed
-- perUserLimit minus what the customer already holds or bought.
local item, cust, qty = ARGV[1], ARGV[2], tonumber(ARGV[3])
if not meta_exists() then return {'REJ', 'NO_SALE', 0, {}} end
local changed = expire_overdue(50)
local a = redis.call('HGET', K_STOCK, item .. ':a')
if not a then return {'REJ', 'NOT_FOUND', 0, changed} end
a = tonumber(a)
local m = redis.call('HMGET', K_META, 'start', 'end', 'state', 'limit')
if m[3] == 'CANCELLED' then return {'REJ', 'SALE_CANCELLED', a, changed} end
if NOW >= tonumber(m[2]) then return {'REJ', 'SALE_ENDED', a, changed} end
if redis.call('HGET', K_META, 'wr') == '1' and ARGV[4] ~= '1' then return {'REJ', 'NOT_ADMITTED', a, changed} end
local e = wl_get(item, cust)
if e and (e.status == 'WAITING' or e.status == 'OFFERED') then
  if e.qty == qty then return {'OK', changed} end
  return {'REJ', 'ALREADY_ON_WAITLIST', a, changed}
end
local wq = base .. 'wlq:' .. item
if a > 0 and redis.call('ZCARD', wq) == 0 then return {'REJ', 'WAITLIST_CLOSED', a, changed} end
local used = tonumber(redis.call('HGET', K_USAGE, item .. '|' .. cust) or '0')
if qty > tonumber(m[4]) then return {'REJ', 'INVALID_QUANTITY', a, changed} end
if used + qty > tonumber(m[4]) then return {'REJ', 'LIMIT_EXCEEDED', a, changed} end
local seq = redis.call('HINCRBY', K_META, 'wlseq', 1)
redis.call('ZADD', wq, seq, cust)
wl_set(item, cust, { seq = seq, qty = qty, status = 'WAITING', joined = NOW, offer = '', ended = '' })
-- Units may already be waiting for a head that wanted more than was free.
serve_waitlist(item)
return {'OK', changed}
