-- queue-join: give a customer a waiting-room ticket, or hand back the one they already hold.
-- KEYS[1] meta.  ARGV: customer, admitPerSecond.
-- Returns ticket facts (see ticket_facts in queue-prelude.lua) | {'REJ', code}, code one of
--   NO_SALE (not live in Redis), NO_WAITING_ROOM, SALE_CANCELLED, SALE_ENDED.
-- Invariants: one ticket per customer, whenever and however often they call; before startsAt a
--   ticket only joins the pre-queue (no score, so arriving early buys no place); from startsAt a
--   new ticket's score is seq + 1, behind the whole pre-queue and every earlier ticket.
local cust, rate = ARGV[1], tonumber(ARGV[2])
local missing = waiting_room_of_sale()
if missing then return {'REJ', missing} end
-- Admission first: the newcomer must not be let in by time that passed before they came.
local advanced = advance_admission(rate)
if redis.call('ZSCORE', K_Q, cust) or redis.call('SISMEMBER', K_QPRE, cust) == 1 then
  return ticket_facts(cust, advanced)
end
local m = redis.call('HMGET', K_META, 'start', 'end', 'state')
if m[3] == 'CANCELLED' then return {'REJ', 'SALE_CANCELLED'} end
if NOW >= tonumber(m[2]) then return {'REJ', 'SALE_ENDED'} end
if NOW < tonumber(m[1]) then
  redis.call('SADD', K_QPRE, cust)
else
  -- The pre-queue is frozen now, so its size is final: later tickets start right behind it.
  if redis.call('HEXISTS', K_QM, 'seq') == 0 then redis.call('HSET', K_QM, 'seq', redis.call('SCARD', K_QPRE)) end
  redis.call('ZADD', K_Q, redis.call('HINCRBY', K_QM, 'seq', 1), cust)
end
return ticket_facts(cust, advanced)
