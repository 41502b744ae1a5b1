-- queue-prequeue: the customers of a started sale's pre-queue, for the one shuffle.
-- KEYS[1] meta.  ARGV: none.
-- Returns {'OK', members} once startsAt has passed and before the shuffle; {'DONE'} after it;
--   {'WAIT'} before startsAt; {'NO_SALE'}.
-- Invariant: members are only handed out once the pre-queue is frozen (joins from startsAt on get a
--   score instead), so the list cannot go stale before queue-shuffle writes it.
if not meta_exists() then return {'NO_SALE'} end
if redis.call('HGET', K_QM, 'shuffled') == '1' then return {'DONE'} end
if NOW < tonumber(redis.call('HGET', K_META, 'start')) then return {'WAIT'} end
return {'OK', redis.call('SMEMBERS', K_QPRE)}
