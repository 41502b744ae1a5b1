-- expire: end every overdue HELD hold of a sale (the sweeper's script; idempotent, so several
-- sweepers at once are harmless). KEYS[1] meta.  ARGV: limit, graceMs (how long past its deadline a CONFIRMING hold is left alone).
-- Returns {ended, overdueConfirming}: ended holds, and CONFIRMING holds past their deadline
-- that the service must resolve against PostgreSQL.
if not meta_exists() then return {{}, {}} end
local ended = expire_overdue(tonumber(ARGV[1]))
local stale = redis.call('ZRANGEBYSCORE', K_CONF, '-inf', NOW - tonumber(ARGV[2]), 'LIMIT', 0, 100)
return {ended, stale}
