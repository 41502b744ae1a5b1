-- Token buckets by GCRA (the generic cell rate algorithm). Prepended to the limiter's own scripts
-- (src/services/rate-buckets.ts) and to reserve.lua, which charges the buying buckets in the same
-- round trip as the purchase decision.
-- A bucket is one key holding its theoretical arrival time (TAT) in microseconds of Redis' clock:
-- when the bucket will be full again. With burst b and emission interval T (microseconds per
-- token: 1e6 / rate a second), a call at `now` is allowed when max(TAT, now) + T <= now + b*T; it
-- then stores that new TAT with a TTL that ends when the TAT passes (a full bucket holds no key).
-- A refused call changes nothing and learns exactly when it would pass: max(TAT, now) + T - b*T - now.
-- Invariants: one script reads and writes a bucket, so every instance sees one count; the buckets
-- of one call are charged all or none (a key named twice is charged twice); no key outlives its TAT.
local function bucket_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function bucket_store(key, tat, now)
  redis.call('SET', key, string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000))
end

-- Charges one token of every bucket keys[i] (burst bursts[i], interval intervals[i] microseconds).
-- Returns -1 when all had one (all charged), else the ms until all would have (none charged).
local function buckets_charge(keys, bursts, intervals)
  local now = bucket_now()
  local tats, order, waitUs = {}, {}, 0
  for i, key in ipairs(keys) do
    local tat = tats[key]
    if not tat then
      tat = tonumber(redis.call('GET', key) or '') or 0
      order[#order + 1] = key
    end
    if tat < now then tat = now end
    local after = tat + intervals[i]
    local wait = after - bursts[i] * intervals[i] - now
    if wait > waitUs then waitUs = wait end
    tats[key] = after
  end
  if waitUs > 0 then return math.ceil(waitUs / 1000) end
  for _, key in ipairs(order) do bucket_store(key, tats[key], now) end
  return -1
end

-- Gives back one token of every bucket keys[i]: a charge that turned out to buy nothing (a
-- replay, found only after the charge on Redis Cluster; a call refused by another bucket).
local function buckets_refund(keys, intervals)
  local now = bucket_now()
  for i, key in ipairs(keys) do
    local tat = tonumber(redis.call('GET', key) or '')
    if tat then
      tat = tat - intervals[i]
      if tat <= now then redis.call('DEL', key) else bucket_store(key, tat, now) end
    end
  end
end
