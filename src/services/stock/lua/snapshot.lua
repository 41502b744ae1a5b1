-- snapshot: a sale's meta and every item's figures, read in one call so they agree.
-- KEYS[1] meta.  Returns {now, metaFlat, stockFlat} (empty tables when the sale is not live).
return {NOW, redis.call('HGETALL', K_META), redis.call('HGETALL', K_STOCK)}
