-- adjust: an admin adds (delta > 0) or removes (delta < 0) available units of an item.
-- KEYS[1] meta.  ARGV: item, delta, reason, admin, expectedStock (init + adj before this change as
--   PostgreSQL has it, or '': a live state that disagrees is stale and answers STALE, unchanged),
--   expectedEpoch (the sale's epoch in PostgreSQL, or ''): a state of another epoch is one a rebuild
--   is replacing (its counts may be read before this change commits) and answers STALE too.
-- Returns {'OK', availableAfter, ended} | {'REJ', code, available, ended}
-- Invariant: available never goes below zero; held and sold units are never taken away.
local item, delta, reason, admin = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
if not meta_exists() then return {'REJ', 'NO_SALE', 0, {}} end
local ended = expire_overdue(50)
local a = redis.call('HGET', K_STOCK, item .. ':a')
if not a then return {'REJ', 'NOT_FOUND', 0, ended} end
if (ARGV[6] or '') ~= '' and ARGV[6] ~= EPOCH then return {'REJ', 'STALE', tonumber(a), ended} end
if ARGV[5] ~= '' then
  local f = redis.call('HMGET', K_STOCK, item .. ':init', item .. ':adj')
  if tonumber(f[1]) + tonumber(f[2]) ~= tonumber(ARGV[5]) then return {'REJ', 'STALE', tonumber(a), ended} end
end
if tonumber(a) + delta < 0 then return {'REJ', 'INSUFFICIENT_AVAILABLE', tonumber(a), ended} end
redis.call('HINCRBY', K_STOCK, item .. ':adj', delta)
local after = add_available(item, delta)
outbox(item, 'ADJUSTED', delta, after, admin, '', reason)
if delta > 0 then serve_waitlist(item) end
return {'OK', tonumber(redis.call('HGET', K_STOCK, item .. ':a')), ended}
