import type { Context } from '../schema/context.js';
import type { Viewer } from '../services/auth.js';
import type { CustomerTier } from '../services/customer-tiers.js';
import { assertId } from '../services/validation.js';

/** The viewer's tier, from memory: an admin's choice, else the identity provider's claim, else STANDARD. */
export function tierOf(v: Viewer, ctx: Context): CustomerTier {
  return ctx.services.tiers.tierOf(v);
}

/** Admin only (the schema's auth scope); any well-formed id, since provider customers have no account row. */
export async function setCustomerTier(customerId: string, tier: CustomerTier, ctx: Context): Promise<Viewer> {
  assertId(customerId, 'customerId');
  await ctx.services.tiers.set(customerId, tier, ctx.viewer!.id);
  return { id: customerId, role: 'customer' };
}
