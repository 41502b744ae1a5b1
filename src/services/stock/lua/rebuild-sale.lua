-- rebuild-sale: replace a sale's live state — missing, partial or stale — with what PostgreSQL knows.
-- KEYS[1] meta.  ARGV[1]: JSON {epoch, meta = {start, end, limit, hold, state, wr},
--   items = {{id, init, adj, sold}}, orders = {{res, item, cust, qty, order, key, cancelled}}}
-- Returns {marker}: the id of the REBUILT entry it appended to the outbox, one per call; events
-- before it in the stream belong to the old state, events after it to the rebuilt one.
-- The caller holds the sale's rebuild lock and has raised the sale's epoch in PostgreSQL first, so
-- no order of the old state can still commit; holds of older epochs are dead from here on.
-- Invariant: available = init + adj - sold, reserved = 0 (unconfirmed holds are gone; their
-- customers see STOCK_REBUILT), per-customer usage = their CONFIRMED units, and each CONFIRMED
-- order's idempotency key replays it. Waitlists are not rebuilt: their entries end LAPSED.
local d = cjson.decode(ARGV[1])
local epoch = tostring(d.epoch)
local oldVer = tonumber(redis.call('HGET', K_META, 'ver') or '0') or 0
local oldOb = redis.call('HGET', K_META, 'ob') or ''
-- Holds the old state still lists end as RELEASED (STOCK_REBUILT) for whoever reads them.
local stale = redis.call('ZRANGE', K_HOLDS, 0, -1)
for _, id in ipairs(redis.call('ZRANGE', K_CONF, 0, -1)) do stale[#stale + 1] = id end
for _, id in ipairs(stale) do
  local rk = base .. 'res:' .. id
  local st = redis.call('HGET', rk, 'status')
  if st == 'HELD' or st == 'CONFIRMING' then
    redis.call('HSET', rk, 'status', 'RELEASED', 'reason', 'STOCK_REBUILT', 'ended', NOW)
    redis.call('PEXPIRE', rk, RETAIN_MS)
  end
end
redis.call('DEL', K_META, K_STOCK, K_USAGE, K_IDEM, K_HOLDS, K_CONF)
for _, it in ipairs(d.items) do
  local wl = base .. 'wl:' .. it.id
  for _, cust in ipairs(redis.call('ZRANGE', base .. 'wlq:' .. it.id, 0, -1)) do
    local e = wl_get(it.id, cust)
    if e then
      e.status = 'LAPSED'
      wl_set(it.id, cust, e)
    end
  end
  redis.call('DEL', base .. 'wlq:' .. it.id)
  -- OFFERED entries' holds died with the old state.
  local all = redis.call('HGETALL', wl)
  for i = 1, #all, 2 do
    local e = wl_get(it.id, all[i])
    if e and e.status == 'OFFERED' then
      e.status = 'LAPSED'
      wl_set(it.id, all[i], e)
    end
  end
end
local m = d.meta
local total = 0
for _, it in ipairs(d.items) do
  local a = it.init + it.adj - it.sold
  redis.call('HSET', K_STOCK, it.id .. ':a', a, it.id .. ':r', 0, it.id .. ':s', it.sold, it.id .. ':init', it.init, it.id .. ':adj', it.adj)
  total = total + a
end
redis.call('HSET', K_USAGE, '~', 1)
redis.call('HSET', K_IDEM, '~', 1)
redis.call('PEXPIREAT', K_IDEM, tonumber(d.meta['end']) + KEEP_AFTER_END_MS)
for _, o in ipairs(d.orders) do
  local rk = base .. 'res:' .. o.res
  redis.call('HSET', rk, 'item', o.item, 'cust', o.cust, 'qty', o.qty, 'status', 'CONFIRMED', 'created', NOW,
    'expires', NOW, 'idem', o.key, 'mut', 'purchase', 'wl', 0, 'order', o.order, 'cancelled', o.cancelled and '1' or '0',
    'ep', epoch)
  redis.call('PEXPIREAT', rk, tonumber(m['end']) + KEEP_AFTER_END_MS)
  if not o.cancelled then add_usage(o.item, o.cust, o.qty) end
  -- A cancelled order's key replays it too.
  if o.key ~= '' then
    redis.call('HSET', K_IDEM, idem_field(o.cust, o.key), 'purchase|' .. o.item .. '|' .. o.qty .. '|' .. o.res)
  end
end
-- Versions keep increasing across the rebuild (subscribers order snapshots by them, and orders
-- record the version they were sold at, so a state that went back in time is recognised).
local ver = math.max(NOW, oldVer + 1, tonumber(d.minVersion or 0) + 1)
redis.call('HSET', K_META, 'start', m.start, 'end', m['end'], 'limit', m.limit, 'hold', m.hold,
  'state', m.state, 'wr', m.wr, 'avail', total, 'ver', ver, 'ep', epoch)
if total == 0 then redis.call('HSET', K_META, 'soldOutAt', NOW) end
local marker = redis.call('XADD', K_OUTBOX, '*', 'i', '', 'k', 'REBUILT', 'd', 0, 'a', 0, 'c', '', 'r', '', 'w', 'epoch ' .. epoch, 't', NOW, 'v', ver, 'p', oldOb)
redis.call('HSET', K_META, 'ob', marker)
return {marker, ver}
