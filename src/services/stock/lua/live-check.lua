-- live-check: what the recovery loop compares with PostgreSQL, read in one call so it agrees.
-- KEYS[1] meta.  Returns {0} when the sale's live state is missing or incomplete, else
--   {1, epoch, ver, stockFlat, confirmingFlat, {state, start, end, limit, hold}}: confirmingFlat is
--   item, units of CONFIRMING holds of this epoch (orders that may be committed in PostgreSQL and
--   not yet counted as sold here); the last the sale's definition as the scripts enforce it.
if not meta_exists() then return {0} end
local conf = {}
for _, id in ipairs(redis.call('ZRANGE', K_CONF, 0, -1)) do
  local h = hold_get(id)
  if h and h.status == 'CONFIRMING' then conf[h.item] = (conf[h.item] or 0) + h.qty end
end
local flat = {}
for item, q in pairs(conf) do
  flat[#flat + 1] = item
  flat[#flat + 1] = q
end
return {1, EPOCH, redis.call('HGET', K_META, 'ver'), redis.call('HGETALL', K_STOCK), flat,
  redis.call('HMGET', K_META, 'state', 'start', 'end', 'limit', 'hold')}
