-- live-check: what the recovery loop compares with PostgreSQL, read in one call so it agrees.
-- KEYS[1] meta.  Returns {0} when the sale's live state is missing or incomplete, else
--   {1, epoch, ver, stockFlat, confirmingFlat, {state, start, end, limit, hold}}: confirmingFlat is
--   item, units of CONFIRMING holds of this epoch (orders that may be committed in PostgreSQL and
--   not yet counted as sold here); then the sale's definition as the scripts enforce it; last
--   heldFlat: item, units of the HELD and CONFIRMING holds that exist, which every script keeps
--   equal to the item's reserved units (hold keys lost on their own leave units reserved for ever).
if not meta_exists() then return {0} end
local conf, held, seen = {}, {}, {}
local function count(id)
  if seen[id] then return end
  seen[id] = true
  local h = hold_get(id)
  if not h then return end
  if h.status == 'CONFIRMING' then conf[h.item] = (conf[h.item] or 0) + h.qty end
  if h.status == 'CONFIRMING' or h.status == 'HELD' then held[h.item] = (held[h.item] or 0) + h.qty end
end
for _, id in ipairs(redis.call('ZRANGE', K_CONF, 0, -1)) do count(id) end
for _, id in ipairs(redis.call('ZRANGE', K_HOLDS, 0, -1)) do count(id) end
local function flatten(t)
  local flat = {}
  for item, q in pairs(t) do
    flat[#flat + 1] = item
    flat[#flat + 1] = q
  end
  return flat
end
return {1, EPOCH, redis.call('HGET', K_META, 'ver'), redis.call('HGETALL', K_STOCK), flatten(conf),
  redis.call('HMGET', K_META, 'state', 'start', 'end', 'limit', 'hold'), flatten(held)}
