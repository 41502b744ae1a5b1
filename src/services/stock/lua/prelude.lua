-- Shared prelude, prepended to every stock script of one sale.
-- KEYS[1] is the sale's meta hash "<prefix>{sale:<id>}:meta"; every other key of the sale is
-- derived from it and shares the {sale:<id>} hash tag, so one sale lives in one cluster slot.
-- Invariant kept by every script, per item:  a + r + s = init + adj,  a >= 0
--   a = available, r = units in HELD or CONFIRMING holds, s = units in confirmed orders.
local base = string.sub(KEYS[1], 1, -5)
local K_META, K_STOCK, K_USAGE, K_IDEM = base .. 'meta', base .. 'stock', base .. 'usage', base .. 'idem'
local K_HOLDS, K_CONF, K_OUTBOX, K_COUNT = base .. 'holds', base .. 'confirming', base .. 'outbox', base .. 'counters'
local RETAIN_MS = 3900000 -- ended holds stay readable for an hour and a bit
local SALE_ID = string.match(KEYS[1], '{sale:([^}]*)}')
-- Holds this script ended or created (waitlist offers), "id|item|qty|status|reason|cust", so the
-- service can tell their customers.
local CHANGED = {}

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

-- Waitlist of an item: `wlq:<item>` orders WAITING customers by join sequence; `wl:<item>` maps a
-- customer to "seq|qty|status|joinedAt|offerId".
local function wl_get(item, cust)
  local e = redis.call('HGET', base .. 'wl:' .. item, cust)
  if not e then return nil end
  local seq, qty, st, joined, offer = string.match(e, '^(%d+)|(%d+)|(%u+)|(%d+)|(.*)$')
  return { seq = seq, qty = tonumber(qty), status = st, joined = joined, offer = offer }
end

local function wl_set(item, cust, e)
  redis.call('HSET', base .. 'wl:' .. item, cust, e.seq .. '|' .. e.qty .. '|' .. e.status .. '|' .. e.joined .. '|' .. (e.offer or ''))
end

-- Offers available units to the head of the item's waitlist, strictly in join order: the head
-- blocks until its full quantity is free. Runs inside every script that frees units, so no racing
-- purchase can take a unit the waitlist is owed (reserve refuses the public while anyone waits).
local function serve_waitlist(item)
  local wq = base .. 'wlq:' .. item
  while true do
    local head = redis.call('ZRANGE', wq, 0, 0)
    if #head == 0 then return end
    local cust = head[1]
    local e = wl_get(item, cust)
    local a = tonumber(redis.call('HGET', K_STOCK, item .. ':a'))
    if e and a < e.qty then return end
    redis.call('ZREM', wq, cust)
    if e then
      local m = redis.call('HMGET', K_META, 'limit', 'hold')
      local used = tonumber(redis.call('HGET', K_USAGE, item .. '|' .. cust) or '0')
      if used + e.qty > tonumber(m[1]) then
        e.status = 'LAPSED'
      else
        local id = SALE_ID .. '.o' .. e.seq
        local expiresAt = NOW + tonumber(m[2]) * 1000
        redis.call('HINCRBY', K_STOCK, item .. ':r', e.qty)
        add_usage(item, cust, e.qty)
        local after = add_available(item, -e.qty)
        redis.call('ZADD', K_HOLDS, expiresAt, id)
        redis.call('HSET', base .. 'res:' .. id, 'item', item, 'cust', cust, 'qty', e.qty, 'status', 'HELD',
          'created', NOW, 'expires', expiresAt, 'idem', '', 'mut', 'offer', 'wl', 1)
        redis.call('ZADD', base .. 'cres:' .. cust, NOW, id)
        outbox(item, 'RESERVED', -e.qty, after, cust, id, 'waitlist offer')
        e.status = 'OFFERED'
        e.offer = id
        CHANGED[#CHANGED + 1] = id .. '|' .. item .. '|' .. e.qty .. '|OFFERED|WAITLIST|' .. cust
      end
      wl_set(item, cust, e)
    end
  end
end

-- Ends a HELD or CONFIRMING hold and gives its units back. Returns "id|item|qty|status|reason|cust"
-- (the customer id last: it is the one part that may itself contain '|'), or nil.
local function end_hold(id, status, reason)
  local rk = base .. 'res:' .. id
  local r = redis.call('HMGET', rk, 'item', 'cust', 'qty', 'status', 'idem', 'wl')
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
  if r[6] == '1' then
    local e = wl_get(item, cust)
    if e and e.offer == id and e.status == 'OFFERED' then
      e.status = reason == 'CUSTOMER' and 'LEFT' or 'LAPSED'
      wl_set(item, cust, e)
    end
  end
  local s = id .. '|' .. item .. '|' .. qty .. '|' .. status .. '|' .. reason .. '|' .. cust
  CHANGED[#CHANGED + 1] = s
  serve_waitlist(item)
  return s
end

-- Expires overdue HELD holds (CONFIRMING ones are resolved against PostgreSQL by the service).
-- Returns CHANGED, which keeps collecting what the rest of the script does.
local function expire_overdue(limit)
  local ids = redis.call('ZRANGEBYSCORE', K_HOLDS, '-inf', NOW, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    if not end_hold(id, 'EXPIRED', 'EXPIRED') then redis.call('ZREM', K_HOLDS, id) end
  end
  return CHANGED
end

local function meta_exists()
  return redis.call('EXISTS', K_META) == 1
end
