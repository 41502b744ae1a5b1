import type { ReadVia } from '../db/read-routing.js';
import type { Viewer } from '../services/auth.js';
import type { Services } from '../services/index.js';
import type { BucketCheck } from '../services/rate-buckets.js';
import type { Loaders } from './loaders.js';

/** A resolver's reads that may come from the read replica: the viewer's, so their own writes show at once. */
export function readVia(ctx: Pick<Context, 'viewer'>): ReadVia {
  return { viewerId: ctx.viewer?.id ?? null };
}

export interface Context {
  viewer: Viewer | null;
  /** Set when a token was sent but refused: auth-only fields answer UNAUTHENTICATED with it. */
  authError: string | null;
  services: Services;
  loaders: Loaders;
  /**
   * Buying rate limits (token buckets) the reserve call charges itself, after its idempotency
   * lookup and in the same round trip as the decision; set by the rate-limit plugin
   * (src/server/rate-limit.ts) for a lone `purchase` or `reserve`.
   */
  rateChecks?: readonly BucketCheck[];
}
