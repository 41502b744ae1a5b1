-- rate_hit: counts one call against one fixed-window counter, atomically. Prepended to the rate
-- limiter's own script (src/services/rate-counter.ts) and to reserve.lua, which folds the buying
-- limits into the purchase decision so that it stays one Redis round trip.
-- key: the counter; max: calls allowed per window; windowMs: the window.
-- Returns allowed (1|0), hits (this window, this call included), msUntilWindowEnds.
-- Invariants: INCR and PEXPIRE happen in one script, so every instance sees one count and no crash
-- or interleaving can leave a counter without a TTL (which would block its caller for ever).
-- Refused calls are counted too: hammering harder never opens the window sooner or later.
local function rate_hit(key, max, windowMs)
  local hits = redis.call('INCR', key)
  local ttl = windowMs
  if hits == 1 then
    redis.call('PEXPIRE', key, windowMs)
  else
    ttl = redis.call('PTTL', key)
    if ttl < 0 then
      redis.call('PEXPIRE', key, windowMs)
      ttl = windowMs
    end
  end
  if hits > max then return 0, hits, ttl end
  return 1, hits, ttl
end
