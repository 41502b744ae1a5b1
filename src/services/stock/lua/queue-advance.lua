-- queue-advance: admit the tickets that the time since the last advance pays for. Every instance
-- calls it for every live waiting-room sale a few times a second; reads call it too.
-- KEYS[1] meta.  ARGV: admitPerSecond.
-- Returns {status, upto, seq, saleAvailable, holds}, status one of NO_SALE, NO_WAITING_ROOM,
--   FINISHED (ended or cancelled: nobody will be admitted again), WAIT (before startsAt), SHUFFLE
--   (the pre-queue needs its order: see queue-prequeue / queue-shuffle), OK. The stock figures let
--   subscribers update their tickets without reading them one by one.
-- Invariant: see queue-prelude.lua; the increment derives from elapsed Redis time, so concurrent
--   callers neither admit twice nor skip anyone.
local rate = tonumber(ARGV[1])
local missing = waiting_room_of_sale()
if missing then return {missing, 0, 0, 0, 0} end
local status = advance_admission(rate)
local m = redis.call('HMGET', K_META, 'end', 'state')
if m[2] == 'CANCELLED' or NOW >= tonumber(m[1]) then status = 'FINISHED' end
local q = redis.call('HMGET', K_QM, 'upto', 'seq')
local avail = tonumber(redis.call('HGET', K_META, 'avail') or '0')
local holds = redis.call('ZCARD', K_HOLDS) + redis.call('ZCARD', K_CONF)
return {status, tonumber(q[1] or '0'), tonumber(q[2] or '0'), avail, holds}
