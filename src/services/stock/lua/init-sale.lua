-- init-sale: create a sale's live state from its definition, once.
-- KEYS[1] meta.  ARGV: start, end, limit, hold, state, waitingRoom, epoch, then item, stock pairs.
-- Returns 1 when created, 0 when it already existed (a second call changes nothing).
if redis.call('EXISTS', K_META) == 1 then return 0 end
local total = 0
for i = 8, #ARGV, 2 do
  local item, stock = ARGV[i], tonumber(ARGV[i + 1])
  redis.call('HSET', K_STOCK, item .. ':a', stock, item .. ':r', 0, item .. ':s', 0, item .. ':init', stock, item .. ':adj', 0)
  outbox(item, 'INITIAL', stock, stock, '', '', '')
  total = total + stock
end
redis.call('HSET', K_META, 'start', ARGV[1], 'end', ARGV[2], 'limit', ARGV[3], 'hold', ARGV[4],
  'state', ARGV[5], 'wr', ARGV[6], 'avail', total, 'ver', 1, 'ep', ARGV[7])
redis.call('HSET', K_USAGE, '~', 1)
redis.call('HSET', K_IDEM, '~', 1)
redis.call('PEXPIREAT', K_IDEM, tonumber(ARGV[2]) + KEEP_AFTER_END_MS)
return 1
