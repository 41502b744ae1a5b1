-- login-guard: one login/register attempt for an email from one client address, atomically
-- (src/services/login-guard.ts). Two limits:
--   KEYS[1] per (email, address): at most ARGV[1] attempts per fixed window of ARGV[2] ms, counted
--           before the password is checked (so concurrent guesses cannot slip past), cleared by a
--           success from that address. Guesses from one address never touch another's counter.
--   KEYS[2] per email, every address together (a hash: n attempts this window, until = blocked
--           until, ms): a generous ceiling of ARGV[3] attempts per ARGV[4] ms. Past it the email
--           takes one attempt per backoff interval (ARGV[5] ms doubling up to ARGV[6] ms) for as
--           long as attempts go on, and one window after.
-- Only attempts that pass the per-address limit reach the ceiling: one address hammering can
-- never push the email into backoff. A refused attempt counts nowhere else.
-- Returns {allowed (1|0), retryAfterMs, refusedBy (0 none, 1 address, 2 email)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local addressMax, addressWindow = tonumber(ARGV[1]), tonumber(ARGV[2])
local ceilingMax, ceilingWindow = tonumber(ARGV[3]), tonumber(ARGV[4])
local backoffBase, backoffMax = tonumber(ARGV[5]), tonumber(ARGV[6])

local blockedUntil = tonumber(redis.call('HGET', KEYS[2], 'until') or '0')
if blockedUntil > now then return {0, blockedUntil - now, 2} end

local hits = redis.call('INCR', KEYS[1])
local ttl = addressWindow
if hits == 1 then
  redis.call('PEXPIRE', KEYS[1], addressWindow)
else
  ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], addressWindow)
    ttl = addressWindow
  end
end
if hits > addressMax then return {0, ttl, 1} end

local n = redis.call('HINCRBY', KEYS[2], 'n', 1)
if n == 1 then redis.call('PEXPIRE', KEYS[2], ceilingWindow) end
local over = n - ceilingMax
if over > 0 then
  local delay = math.min(backoffMax, backoffBase * 2 ^ math.min(over - 1, 40))
  redis.call('HSET', KEYS[2], 'until', now + delay)
  local keep = delay + ceilingWindow
  if redis.call('PTTL', KEYS[2]) < keep then redis.call('PEXPIRE', KEYS[2], keep) end
end
return {1, 0, 0}
