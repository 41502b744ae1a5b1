-- rebuild-sale: recreate a sale's live state after Redis lost it, from what PostgreSQL knows.
-- KEYS[1] meta.  ARGV[1]: JSON {meta = {start, end, limit, hold, state, wr},
--   items = {{id, init, adj, sold}}, orders = {{res, item, cust, qty, order, key, cancelled}}}
-- Returns 1 when rebuilt, 0 when the sale is live already (another instance was first).
-- Invariant: available = init + adj - sold, reserved = 0 (unconfirmed holds are gone with Redis;
-- their customers see STOCK_REBUILT), per-customer usage = their CONFIRMED units, and each
-- CONFIRMED order's idempotency key replays it.
if meta_exists() then return 0 end
local d = cjson.decode(ARGV[1])
local total = 0
for _, it in ipairs(d.items) do
  local a = it.init + it.adj - it.sold
  redis.call('HSET', K_STOCK, it.id .. ':a', a, it.id .. ':r', 0, it.id .. ':s', it.sold, it.id .. ':init', it.init, it.id .. ':adj', it.adj)
  total = total + a
end
for _, o in ipairs(d.orders) do
  local rk = base .. 'res:' .. o.res
  redis.call('HSET', rk, 'item', o.item, 'cust', o.cust, 'qty', o.qty, 'status', 'CONFIRMED', 'created', NOW,
    'expires', NOW, 'idem', o.key or '', 'mut', 'purchase', 'wl', 0, 'order', o.order, 'cancelled', o.cancelled and '1' or '0')
  if not o.cancelled then
    add_usage(o.item, o.cust, o.qty)
    if o.key and o.key ~= cjson.null and o.key ~= '' then
      redis.call('HSET', K_IDEM, idem_field(o.cust, o.key), 'purchase|' .. o.item .. '|' .. o.qty .. '|' .. o.res)
    end
  end
end
local m = d.meta
-- Versions keep increasing across the rebuild: subscribers order snapshots by them.
redis.call('HSET', K_META, 'start', m.start, 'end', m['end'], 'limit', m.limit, 'hold', m.hold,
  'state', m.state, 'wr', m.wr, 'avail', total, 'ver', NOW)
if total == 0 then redis.call('HSET', K_META, 'soldOutAt', NOW) end
return 1
