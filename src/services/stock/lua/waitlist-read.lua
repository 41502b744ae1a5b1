-- waitlist-read: a customer's entries on some items of a sale, with live positions, and each
-- item's waitlist size. KEYS[1] meta.  ARGV: customer, item...
-- Returns a flat list: item, entry ("seq|qty|status|joinedAt|offerId" or ''), rank (-1 when not
-- WAITING), size, for each item.
local cust = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local item = ARGV[i]
  local wq = base .. 'wlq:' .. item
  local e = redis.call('HGET', base .. 'wl:' .. item, cust) or ''
  local rank = redis.call('ZRANK', wq, cust)
  out[#out + 1] = item
  out[#out + 1] = e
  out[#out + 1] = rank or -1
  out[#out + 1] = redis.call('ZCARD', wq)
end
return out
