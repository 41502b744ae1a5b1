-- login-succeeded: a login/register for an email succeeded from one client address
-- (src/services/login-guard.ts). Its per-(email, address) counter starts again; the email's
-- ceiling forgets this attempt and lifts a running backoff, so the owner is not kept waiting —
-- but keeps every other attempt, so the next guess from elsewhere backs off again at once.
redis.call('DEL', KEYS[1])
if tonumber(redis.call('HGET', KEYS[2], 'n') or '0') > 0 then redis.call('HINCRBY', KEYS[2], 'n', -1) end
redis.call('HDEL', KEYS[2], 'until')
return 1
