import type { SaleSnapshot } from './stock/engine.js';

export type SaleStatus = 'SCHEDULED' | 'ACTIVE' | 'PAUSED' | 'SOLD_OUT' | 'ENDED' | 'CANCELLED';

/**
 * The public status, derived from the admin state, the clock (Redis' clock, so every instance
 * agrees) and live stock. Admin states win over the clock's SCHEDULED only once they matter:
 * CANCELLED and ENDED are final, PAUSED wins over SOLD_OUT.
 */
export function deriveStatus(s: Pick<SaleSnapshot, 'state' | 'startsAt' | 'endsAt' | 'available' | 'now'>): SaleStatus {
  if (s.state === 'CANCELLED') return 'CANCELLED';
  if (s.now >= s.endsAt) return 'ENDED';
  if (s.now < s.startsAt) return 'SCHEDULED';
  if (s.state === 'PAUSED') return 'PAUSED';
  if (s.available <= 0) return 'SOLD_OUT';
  return 'ACTIVE';
}
