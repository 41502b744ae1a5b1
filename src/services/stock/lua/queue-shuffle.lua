-- queue-shuffle: write the pre-queue's random order (drawn in Node with node:crypto), once.
-- KEYS[1] meta.  ARGV: every pre-queue customer, the one to be first at ARGV[1].
-- Returns {'OK', n} when this call wrote the order; {'DONE'} when an earlier call (of any instance)
--   already had; {'STALE'} when ARGV is not exactly the pre-queue (nothing written; read again);
--   {'WAIT'} before startsAt; {'NO_SALE'}.
-- Invariants: the order is written at most once per sale, atomically, so instances racing at the
--   start cannot give anyone two places; pre-queue tickets get scores 1..n and every ticket taken
--   since startsAt (scored from n + 1 by queue-join) stays behind them.
if not meta_exists() then return {'NO_SALE'} end
if redis.call('HGET', K_QM, 'shuffled') == '1' then return {'DONE'} end
if NOW < tonumber(redis.call('HGET', K_META, 'start')) then return {'WAIT'} end
local n = #ARGV
if redis.call('SCARD', K_QPRE) ~= n then return {'STALE'} end
local seen = {}
for i = 1, n do
  local cust = ARGV[i]
  if seen[cust] or redis.call('SISMEMBER', K_QPRE, cust) == 0 then return {'STALE'} end
  seen[cust] = true
end
for i = 1, n do redis.call('ZADD', K_Q, i, ARGV[i]) end
redis.call('HSETNX', K_QM, 'seq', n)
redis.call('HSET', K_QM, 'shuffled', '1', 'upto', 0, 'last', NOW, 'carry', 0, 'pqn', n)
redis.call('DEL', K_QPRE)
return {'OK', n}
