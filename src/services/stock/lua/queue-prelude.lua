-- Waiting-room prelude, prepended (after the stock prelude) to every queue-*.lua script.
-- A sale's waiting room lives in the sale's slot beside its stock:
--   qm      hash: seq (highest score given), upto (tickets with score <= upto are admitted),
--           last (Redis ms of the last advance), carry (thousandths of an admission earned but not
--           yet granted), shuffled ('1' once the pre-queue has its scores), pqn (pre-queue size)
--   qpre    set of customers who joined before startsAt (PENDING); frozen at startsAt, deleted
--           once shuffled into q
--   q       sorted set customer -> score; scores are exactly 1..seq, one per ticket
--   qsteps  sorted set of advances: score = upto after the advance, member = its Redis ms, so the
--           admission time of score s is the first step with upto >= s (one write per advance,
--           not one per admitted ticket)
-- Invariants: 0 <= upto <= seq and upto never decreases; between two advances upto grows by at
-- most rate * elapsed Redis time (plus the carry), however many instances call in, so nobody is
-- admitted twice and no score is skipped; until the pre-queue is shuffled nobody is admitted and
-- every new score lies behind the whole pre-queue.
local K_QM, K_QPRE, K_Q, K_QSTEPS = base .. 'qm', base .. 'qpre', base .. 'q', base .. 'qsteps'

-- Grants the admissions that elapsed Redis time pays for at `rate` a second.
-- Returns 'WAIT' (before startsAt), 'SHUFFLE' (started, the pre-queue still needs its order) or 'OK'.
local function advance_admission(rate)
  local q = redis.call('HMGET', K_QM, 'shuffled', 'upto', 'last', 'carry', 'seq')
  local m = redis.call('HMGET', K_META, 'start', 'end', 'state')
  if q[1] ~= '1' then
    if NOW < tonumber(m[1]) then return 'WAIT' end
    -- The pre-queue is frozen from startsAt on, so an empty one stays empty: nothing to shuffle.
    if redis.call('SCARD', K_QPRE) > 0 then return 'SHUFFLE' end
    redis.call('HSETNX', K_QM, 'seq', 0)
    redis.call('HSET', K_QM, 'shuffled', '1', 'upto', 0, 'last', NOW, 'carry', 0, 'pqn', 0)
    return 'OK'
  end
  local upto, last, carry, seq = tonumber(q[2] or '0'), tonumber(q[3] or NOW), tonumber(q[4] or '0'), tonumber(q[5] or '0')
  local elapsed = NOW - last
  if elapsed <= 0 then return 'OK' end
  if m[3] ~= 'OPEN' or NOW >= tonumber(m[2]) then
    -- Nobody can buy: admitting would only burn tokens, and the pause must not bank capacity.
    redis.call('HSET', K_QM, 'last', NOW, 'carry', 0)
    return 'OK'
  end
  local owed = carry + elapsed * rate
  local granted = math.floor(owed / 1000)
  local nextUpto = upto + granted
  carry = owed - granted * 1000
  -- Capacity must not pile up while nobody waits, or a later crowd would be let in at once.
  if nextUpto >= seq then nextUpto, carry = seq, 0 end
  redis.call('HSET', K_QM, 'upto', nextUpto, 'last', NOW, 'carry', carry)
  if nextUpto > upto then redis.call('ZADD', K_QSTEPS, nextUpto, NOW) end
  return 'OK'
end

-- A customer's ticket as it stands: {'OK', kind ('NONE'|'PENDING'|'QUEUED'), score, upto,
-- admittedAt (0 unless score <= upto), now, saleAvailable, holds (HELD + CONFIRMING), advance}.
local function ticket_facts(cust, advanced)
  local kind, score, admittedAt = 'NONE', 0, 0
  local upto = tonumber(redis.call('HGET', K_QM, 'upto') or '0')
  local sc = redis.call('ZSCORE', K_Q, cust)
  if sc then
    kind, score = 'QUEUED', tonumber(sc)
    if score <= upto then
      local step = redis.call('ZRANGEBYSCORE', K_QSTEPS, score, '+inf', 'LIMIT', 0, 1)
      admittedAt = tonumber(step[1] or NOW)
    end
  elseif redis.call('SISMEMBER', K_QPRE, cust) == 1 then
    kind = 'PENDING'
  end
  local avail = tonumber(redis.call('HGET', K_META, 'avail') or '0')
  local holds = redis.call('ZCARD', K_HOLDS) + redis.call('ZCARD', K_CONF)
  return {'OK', kind, score, upto, admittedAt, NOW, avail, holds, advanced}
end

local function waiting_room_of_sale()
  if not meta_exists() then return 'NO_SALE' end
  if redis.call('HGET', K_META, 'wr') ~= '1' then return 'NO_WAITING_ROOM' end
  return nil
end
