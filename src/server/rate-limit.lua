-- rate-limit: count one call against one fixed-window counter, atomically.
-- KEYS[1] the counter.  ARGV: max (calls allowed per window), windowMs.
-- Returns {allowed (1|0), hits (this window, this call included), msUntilWindowEnds}.
-- Invariants: INCR and PEXPIRE happen in one script, so every instance sees one count and no crash
-- or interleaving can leave a counter without a TTL (which would block its caller for ever).
-- Refused calls are counted too: hammering harder never opens the window sooner or later.
local max, windowMs = tonumber(ARGV[1]), tonumber(ARGV[2])
local hits = redis.call('INCR', KEYS[1])
local ttl = windowMs
if hits == 1 then
  redis.call('PEXPIRE', KEYS[1], windowMs)
else
  ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], windowMs)
    ttl = windowMs
  end
end
if hits > max then return {0, hits, ttl} end
return {1, hits, ttl}
