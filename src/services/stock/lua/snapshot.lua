-- snapshot: a sale's meta and every item's figures, read in one call so they agree.
-- KEYS[1] meta.  Returns {now, metaFlat, stockFlat} (empty tables when the sale's live state is
-- missing or incomplete: then it must be rebuilt, not read).
if not meta_exists() then return {NOW, {}, {}} end
return {NOW, redis.call('HGETALL', K_META), redis.call('HGETALL', K_STOCK)}
