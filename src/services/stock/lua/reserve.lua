-- reserve: take `qty` units of an item for a customer, as a hold (reserve) or straight into
-- confirmation (purchase, whose order is being committed to PostgreSQL).
-- KEYS[1] meta; KEYS[2..n] token buckets (rate-bucket.lua) the caller folded in (standalone
--   Redis only, as they are outside the sale's slot; none on a cluster).
-- ARGV: item, customer, qty, idemKey, mutation ('reserve'|'purchase'), newId,
--   confirmWindowMs, admitted ('1' when the caller verified an admission token for this customer
--   and sale; only waiting-room sales ask), bucketVerdict (on a cluster, the buckets the caller
--   charged just before: ms to wait when they refused, -1 or '' when they allowed or there are
--   none), then burst, intervalUs for each bucket KEYS[2..n].
-- Returns one of
--   {'OK', id, createdAt, expiresAt, availableAfter, saleAvailable, ver, ended, epoch}
--   {'REPLAY', id, ended}            the same customer and key already succeeded
--   {'REJ', code, available, retryAfterMs, ended}
--   {'RATE', retryAfterMs, ended}    over a rate limit: no stock decision was made
-- Invariants: a rejection changes no stock; a customer's HELD+CONFIRMING+CONFIRMED units of an
-- item never exceed perUserLimit; one success per (customer, key); a replay (or a reused key) is
-- answered before the buckets are charged, so only a new attempt draws a token.
local item, cust, qty, key, mutation, newId = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local confirmWindow = tonumber(ARGV[7])

if not meta_exists() then return {'REJ', 'NO_SALE', 0, 0, {}} end
local ended = expire_overdue(50)

-- A replay first: a client's retries of one attempt are free, also while the first is in flight
-- (its success is recorded by the call that made it, in this same script).
local idemField = idem_field(cust, key)
local seen = redis.call('HGET', K_IDEM, idemField)
if seen then
  local m, i, q, id = string.match(seen, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
  if m == mutation and i == item and tonumber(q) == qty then return {'REPLAY', id, ended} end
  return {'REJ', 'IDEMPOTENCY_KEY_REUSED', -1, 0, ended}
end

-- A new attempt draws a token from every bucket, or is refused and draws none. After the sale
-- check, so the caller's retry of a sale brought live again is charged once.
local limitedMs = tonumber(ARGV[9]) or -1
if #KEYS > 1 then
  local buckets, bursts, intervals = {}, {}, {}
  for i = 2, #KEYS do
    buckets[i - 1], bursts[i - 1], intervals[i - 1] = KEYS[i], tonumber(ARGV[2 * i + 6]), tonumber(ARGV[2 * i + 7])
  end
  limitedMs = buckets_charge(buckets, bursts, intervals)
end
if limitedMs >= 0 then return {'RATE', limitedMs, ended} end

redis.call('HINCRBY', K_COUNT, 'attempts', 1)
local function reject(code, available, retryMs)
  redis.call('HINCRBY', K_COUNT, 'rej:' .. code, 1)
  return {'REJ', code, available, retryMs or 0, ended}
end

local a = redis.call('HGET', K_STOCK, item .. ':a')
if not a then return reject('NOT_FOUND', -1) end
a = tonumber(a)
local m = redis.call('HMGET', K_META, 'start', 'end', 'state', 'limit', 'hold', 'wr')
local startsAt, endsAt, state, limit, hold = tonumber(m[1]), tonumber(m[2]), m[3], tonumber(m[4]), tonumber(m[5])
if state == 'CANCELLED' then return reject('SALE_CANCELLED', a) end
if NOW >= endsAt then return reject('SALE_ENDED', a) end
if NOW < startsAt then return reject('SALE_NOT_STARTED', a, startsAt - NOW) end
if state == 'PAUSED' then return reject('SALE_PAUSED', a) end
if m[6] == '1' and ARGV[8] ~= '1' then return reject('NOT_ADMITTED', a) end
if qty > limit then return reject('INVALID_QUANTITY', a) end
local used = tonumber(redis.call('HGET', K_USAGE, item .. '|' .. cust) or '0')
if used + qty > limit then return reject('LIMIT_EXCEEDED', a) end
-- While anyone waits, freed units belong to the waitlist: the public sees none.
if redis.call('ZCARD', base .. 'wlq:' .. item) > 0 then return reject('SOLD_OUT', 0) end
if a < qty then
  local nextExpiry = redis.call('ZRANGE', K_HOLDS, 0, 0, 'WITHSCORES')
  local retry = 0
  if nextExpiry[2] then retry = tonumber(nextExpiry[2]) - NOW end
  return reject('SOLD_OUT', a, retry)
end

redis.call('HINCRBY', K_STOCK, item .. ':r', qty)
add_usage(item, cust, qty)
local after, total = add_available(item, -qty)
local expiresAt = NOW + hold * 1000
local status = 'HELD'
if mutation == 'purchase' then
  status = 'CONFIRMING'
  redis.call('ZADD', K_CONF, NOW + confirmWindow, newId)
else
  redis.call('ZADD', K_HOLDS, expiresAt, newId)
end
redis.call('HSET', base .. 'res:' .. newId, 'item', item, 'cust', cust, 'qty', qty, 'status', status,
  'created', NOW, 'expires', expiresAt, 'idem', key, 'mut', mutation, 'wl', 0, 'ep', EPOCH)
redis.call('PEXPIREAT', base .. 'res:' .. newId, keep_until())
index_hold(cust, newId)
redis.call('HSET', K_IDEM, idemField, mutation .. '|' .. item .. '|' .. qty .. '|' .. newId)
-- A key replays its success (a cancelled order's too) until a week after the sale's end.
redis.call('PEXPIREAT', K_IDEM, keep_until())
outbox(item, 'RESERVED', -qty, after, cust, newId, mutation)
local ver = redis.call('HGET', K_META, 'ver')
return {'OK', newId, NOW, expiresAt, after, total, ver, ended, EPOCH}
