-- Shared prelude, prepended to every stock script of one sale.
-- KEYS[1] is the sale's meta hash "<prefix>{sale:<id>}:meta"; every other key of the sale is
-- derived from it and shares the {sale:<id>} hash tag, so one sale lives in one cluster slot.
-- Invariant kept by every script, per item:  a + r + s = init + adj,  a >= 0
--   a = available, r = units in HELD or CONFIRMING holds, s = units in confirmed orders.
local base = string.sub(KEYS[1], 1, -5)
local K_META, K_STOCK, K_USAGE, K_IDEM = base .. 'meta', base .. 'stock', base .. 'usage', base .. 'idem'
local K_HOLDS, K_CONF, K_OUTBOX, K_COUNT = base .. 'holds', base .. 'confirming', base .. 'outbox', base .. 'counters'
local RETAIN_MS = 3900000 -- ended holds stay readable for an hour and a bit

local t = redis.call('TIME')
local NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function outbox(item, kind, delta, after, cust, res, reason)
  redis.call('XADD', K_OUTBOX, '*', 'i', item, 'k', kind, 'd', delta, 'a', after,
    'c', cust or '', 'r', res or '', 'w', reason or '', 't', NOW)
end

-- Moves `qty` units of an item into available, keeping the sale total and sell-out time right.
local function add_available(item, qty)
  local after = redis.call('HINCRBY', K_STOCK, item .. ':a', qty)
  local total = redis.call('HINCRBY', K_META, 'avail', qty)
  if total == 0 then
    if redis.call('HEXISTS', K_META, 'soldOutAt') == 0 then redis.call('HSET', K_META, 'soldOutAt', NOW) end
  end
  redis.call('HINCRBY', K_META, 'ver', 1)
  return after, total
end

-- Length-prefixed so that no customer id and key pair can collide with another.
local function idem_field(cust, key)
  return string.len(cust) .. ':' .. cust .. '|' .. key
end

local function add_usage(item, cust, qty)
  local field = item .. '|' .. cust
  local left = redis.call('HINCRBY', K_USAGE, field, qty)
  if left <= 0 then redis.call('HDEL', K_USAGE, field) end
  return left
end

-- Ends a HELD or CONFIRMING hold and gives its units back. Returns "id|item|qty|status|reason|cust"
-- (the customer id last: it is the one part that may itself contain '|'), or nil.
local function end_hold(id, status, reason)
  local rk = base .. 'res:' .. id
  local r = redis.call('HMGET', rk, 'item', 'cust', 'qty', 'status', 'idem')
  local st = r[4]
  if st ~= 'HELD' and st ~= 'CONFIRMING' then return nil end
  local item, cust, qty = r[1], r[2], tonumber(r[3])
  redis.call('HSET', rk, 'status', status, 'reason', reason, 'ended', NOW)
  redis.call('PEXPIRE', rk, RETAIN_MS)
  redis.call('ZREM', K_HOLDS, id)
  redis.call('ZREM', K_CONF, id)
  redis.call('HINCRBY', K_STOCK, item .. ':r', -qty)
  add_usage(item, cust, -qty)
  local after = add_available(item, qty)
  outbox(item, status, qty, after, cust, id, reason)
  if status == 'EXPIRED' then redis.call('HINCRBY', K_COUNT, 'expired', 1) end
  -- A failed confirm is a rejection, and rejections are not remembered: the key may be retried.
  if reason == 'CONFIRM_FAILED' and r[5] and r[5] ~= '' then redis.call('HDEL', K_IDEM, idem_field(cust, r[5])) end
  return id .. '|' .. item .. '|' .. qty .. '|' .. status .. '|' .. reason .. '|' .. cust
end

-- Expires overdue HELD holds (CONFIRMING ones are resolved against PostgreSQL by the service).
local function expire_overdue(limit)
  local ended = {}
  local ids = redis.call('ZRANGEBYSCORE', K_HOLDS, '-inf', NOW, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    local e = end_hold(id, 'EXPIRED', 'EXPIRED')
    if e then ended[#ended + 1] = e else redis.call('ZREM', K_HOLDS, id) end
  end
  return ended
end

local function meta_exists()
  return redis.call('EXISTS', K_META) == 1
end
