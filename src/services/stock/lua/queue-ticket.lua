-- queue-ticket: read a customer's waiting-room ticket, advancing admission first so the answer is
-- exact at the moment it is read.
-- KEYS[1] meta.  ARGV: customer, admitPerSecond.
-- Returns ticket facts (see ticket_facts in queue-prelude.lua; kind 'NONE' without a ticket) |
--   {'REJ', code}, code NO_SALE or NO_WAITING_ROOM.
-- Invariant: reading changes nothing but the admission counter, which only moves as time allows.
local cust, rate = ARGV[1], tonumber(ARGV[2])
local missing = waiting_room_of_sale()
if missing then return {'REJ', missing} end
return ticket_facts(cust, advance_admission(rate))
