-- Shared prelude, prepended to every stock script of one sale.
-- KEYS[1] is the sale's meta hash "<prefix>{sale:<id>}:meta"; every other key of the sale is
-- derived from it and shares the {sale:<id>} hash tag, so one sale lives in one cluster slot.
-- Invariant kept by every script, per item:  a + r + s = init + adj,  a >= 0
--   a = available, r = units in HELD or CONFIRMING holds, s = units in confirmed orders.
-- A sale's live state is whole or not trusted: meta, stock, usage and idem always exist together
-- (usage and idem keep a sentinel field '~'), and meta's `ep` is the sale's fencing epoch, equal to
-- PostgreSQL's `sales.live_epoch`. A script that finds part of the state missing answers NO_SALE
-- and writes nothing, so no script ever recreates part of a sale; the service rebuilds it whole
-- from PostgreSQL under a new epoch. A hold belongs to the epoch it was made in (`ep`): holds of an
-- older epoch are dead, whatever their status says.
local base = string.sub(KEYS[1], 1, -5)
local K_META, K_STOCK, K_USAGE, K_IDEM = base .. 'meta', base .. 'stock', base .. 'usage', base .. 'idem'
local K_HOLDS, K_CONF, K_OUTBOX, K_COUNT = base .. 'holds', base .. 'confirming', base .. 'outbox', base .. 'counters'
local RETAIN_MS = 3900000 -- ended holds stay readable for an hour and a bit
-- Confirmed holds (they replay their idempotency key) and customers' hold indexes live until a week
-- after the sale's end: every per-hold and per-customer key carries a TTL, so state stays bounded.
local KEEP_AFTER_END_MS = 7 * 24 * 3600 * 1000
-- A customer's hold index keeps the newest this many (me.reservations reads 100).
local INDEX_KEEP = 100
local SALE_ID = string.match(KEYS[1], '{sale:([^}]*)}')
-- Holds this script ended or created (waitlist offers), "id|item|qty|status|reason|wl|cust", so
-- the service can tell their customers (wl = '1' for a waitlist offer).
local CHANGED = {}

-- The sale's fencing epoch, read by meta_exists().
local EPOCH = nil

local t = redis.call('TIME')
local NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Each event carries the sale's live version after its change ('v'): the ledger remembers the
-- highest it copied, so a live state that went back in time is recognised even when no order
-- recorded a version (only holds moved). It names the event before it ('p', meta's `ob`): the
-- ledger refuses two events after the same one, so two copies of the state that went different
-- ways (a failover to a replica that missed writes) are caught even once the versions caught up.
local function outbox(item, kind, delta, after, cust, res, reason)
  local m = redis.call('HMGET', K_META, 'ver', 'ob')
  local id = redis.call('XADD', K_OUTBOX, '*', 'i', item, 'k', kind, 'd', delta, 'a', after,
    'c', cust or '', 'r', res or '', 'w', reason or '', 't', NOW, 'v', m[1] or 0, 'p', m[2] or '')
  if m[1] then redis.call('HSET', K_META, 'ob', id) end
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

-- When a sale's kept keys expire: a week after its end.
local function keep_until()
  return tonumber(redis.call('HGET', K_META, 'end')) + KEEP_AFTER_END_MS
end

-- Adds hold `id` to its customer's index (newest first for me.reservations), bounded in size and time.
local function index_hold(cust, id)
  local k = base .. 'cres:' .. cust
  redis.call('ZADD', k, NOW, id)
  redis.call('ZREMRANGEBYRANK', k, 0, -(INDEX_KEEP + 1))
  redis.call('PEXPIREAT', k, keep_until())
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
-- customer to "seq|qty|status|joinedAt|offerId|endedAt". An entry ends FULFILLED (its offer was
-- confirmed), LAPSED (its offer ended unconfirmed, or it could no longer be served) or LEFT, and
-- keeps its end time so its customer is shown the ending for an hour.
local function wl_get(item, cust)
  local e = redis.call('HGET', base .. 'wl:' .. item, cust)
  if not e then return nil end
  local seq, qty, st, joined, offer, ended = string.match(e, '^(%d+)|(%d+)|(%u+)|(%d+)|([^|]*)|?(%d*)$')
  return { seq = seq, qty = tonumber(qty), status = st, joined = joined, offer = offer, ended = ended }
end

local WL_ENDED = { FULFILLED = true, LAPSED = true, LEFT = true }

local function wl_set(item, cust, e)
  local ended = ''
  if WL_ENDED[e.status] then ended = (e.ended ~= nil and e.ended ~= '') and e.ended or NOW end
  redis.call('HSET', base .. 'wl:' .. item, cust, e.seq .. '|' .. e.qty .. '|' .. e.status .. '|' .. e.joined .. '|' .. (e.offer or '') .. '|' .. ended)
end

-- The sale takes no more holds or offers: cancelled, or past its end.
local function sale_closed()
  local m = redis.call('HMGET', K_META, 'state', 'end')
  return m[1] == 'CANCELLED' or NOW >= tonumber(m[2])
end

-- Offers available units to the head of the item's waitlist, strictly in join order: the head
-- blocks until its full quantity is free. Runs inside every script that frees units, so no racing
-- purchase can take a unit the waitlist is owed (reserve refuses the public while anyone waits).
local function serve_waitlist(item)
  local wq = base .. 'wlq:' .. item
  if sale_closed() then return end
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
        CHANGED[#CHANGED + 1] = '|' .. item .. '|' .. e.qty .. '|LAPSED|LIMIT|1|' .. cust
      else
        local id = SALE_ID .. '.o' .. e.seq
        local expiresAt = NOW + tonumber(m[2]) * 1000
        redis.call('HINCRBY', K_STOCK, item .. ':r', e.qty)
        add_usage(item, cust, e.qty)
        local after = add_available(item, -e.qty)
        redis.call('ZADD', K_HOLDS, expiresAt, id)
        redis.call('HSET', base .. 'res:' .. id, 'item', item, 'cust', cust, 'qty', e.qty, 'status', 'HELD',
          'created', NOW, 'expires', expiresAt, 'idem', '', 'mut', 'offer', 'wl', 1, 'ep', EPOCH)
        redis.call('PEXPIREAT', base .. 'res:' .. id, keep_until())
        index_hold(cust, id)
        outbox(item, 'RESERVED', -e.qty, after, cust, id, 'waitlist offer')
        e.status = 'OFFERED'
        e.offer = id
        CHANGED[#CHANGED + 1] = id .. '|' .. item .. '|' .. e.qty .. '|OFFERED|WAITLIST|1|' .. cust
      end
      wl_set(item, cust, e)
    end
  end
end

-- The one hold state machine: every status change of a hold goes through `end_hold` or
-- `move_hold`, and only along these edges. A CONFIRMING hold is left only by the path that has asked
-- PostgreSQL (the committing request or the sweeper's resolution): to CONFIRMED when the order is
-- committed, to RELEASED when it surely is not. Customers, admins, cancels and the clock never end it.
local MOVES = {
  HELD = { CONFIRMING = true, RELEASED = true, EXPIRED = true },
  CONFIRMING = { CONFIRMED = true, RELEASED = true },
}

-- The hold `id` as the state machine sees it, or nil when it does not exist or belongs to an older
-- epoch of the sale (rebuilt since: dead).
local function hold_get(id)
  local r = redis.call('HMGET', base .. 'res:' .. id, 'item', 'cust', 'qty', 'status', 'idem', 'wl', 'ep', 'order', 'cancelled')
  if not r[1] or r[7] ~= EPOCH then return nil end
  return { id = id, item = r[1], cust = r[2], qty = tonumber(r[3]), status = r[4], idem = r[5], wl = r[6], order = r[8], cancelled = r[9] }
end

-- Moves hold `h` from status `from` to `to`, or returns false (wrong status, or no such edge).
local function move_hold(h, from, to)
  if not h or h.status ~= from or not MOVES[from] or not MOVES[from][to] then return false end
  h.status = to
  return true
end

-- Ends hold `id`, which must be in status `from`, as `status` (RELEASED or EXPIRED) and gives its
-- units back. Returns "id|item|qty|status|reason|wl|cust" (the customer id last: it is the one
-- part that may itself contain '|'), or nil when the state machine refuses.
local function end_hold(id, status, reason, from)
  local h = hold_get(id)
  if not move_hold(h, from, status) then return nil end
  local rk = base .. 'res:' .. id
  local item, cust, qty = h.item, h.cust, h.qty
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
  if reason == 'CONFIRM_FAILED' and h.idem and h.idem ~= '' then redis.call('HDEL', K_IDEM, idem_field(cust, h.idem)) end
  if h.wl == '1' then
    local e = wl_get(item, cust)
    if e and e.offer == id and e.status == 'OFFERED' then
      e.status = reason == 'CUSTOMER' and 'LEFT' or 'LAPSED'
      wl_set(item, cust, e)
    end
  end
  local s = id .. '|' .. item .. '|' .. qty .. '|' .. status .. '|' .. reason .. '|' .. (h.wl or '0') .. '|' .. cust
  CHANGED[#CHANGED + 1] = s
  serve_waitlist(item)
  return s
end

-- Expires overdue HELD holds (CONFIRMING ones are resolved against PostgreSQL by the service).
-- Returns CHANGED, which keeps collecting what the rest of the script does.
local function expire_overdue(limit)
  local ids = redis.call('ZRANGEBYSCORE', K_HOLDS, '-inf', NOW, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    if not end_hold(id, 'EXPIRED', 'EXPIRED', 'HELD') then redis.call('ZREM', K_HOLDS, id) end
  end
  return CHANGED
end

-- True when the sale's live state is whole (see the top); sets EPOCH. Every script that reads or
-- writes stock calls it first and answers NO_SALE, changing nothing, when it is false.
local function meta_exists()
  if redis.call('EXISTS', K_META, K_STOCK, K_USAGE, K_IDEM) ~= 4 then return false end
  EPOCH = redis.call('HGET', K_META, 'ep')
  return EPOCH ~= false
end
