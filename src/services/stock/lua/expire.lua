-- expire: end every overdue HELD hold of a sale (the sweeper's script; idempotent, so several
-- sweepers at once are harmless). KEYS[1] meta.  ARGV: limit, graceMs (how long past its deadline
-- a CONFIRMING hold is left alone), retireAfterMs (0: never).
-- Returns {ended, overdueConfirming, retirable}: ended holds, CONFIRMING holds past their deadline
-- that the service must resolve against PostgreSQL, and 1 when the sale ended retireAfterMs ago
-- or more and has nothing left for the sweepers and drainers (no hold, no undrained stock event),
-- so the service may take it off the live-sales set.
if not meta_exists() then return {{}, {}, 0} end
local ended = expire_overdue(tonumber(ARGV[1]))
local stale = redis.call('ZRANGEBYSCORE', K_CONF, '-inf', NOW - tonumber(ARGV[2]), 'LIMIT', 0, 100)
local retireAfter = tonumber(ARGV[3])
local retirable = 0
if retireAfter > 0 and NOW >= tonumber(redis.call('HGET', K_META, 'end')) + retireAfter
  and redis.call('ZCARD', K_HOLDS) == 0 and redis.call('ZCARD', K_CONF) == 0 and redis.call('XLEN', K_OUTBOX) == 0 then
  retirable = 1
end
return {ended, stale, retirable}
