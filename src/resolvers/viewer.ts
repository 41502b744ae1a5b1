import { readVia, type Context } from '../schema/context.js';
import type { Viewer } from '../services/auth.js';
import { unauthenticated } from '../services/errors.js';
import { assertId } from '../services/validation.js';

/** null without a token; a refused token is an error, not an anonymous answer. */
export function me(ctx: Context) {
  if (ctx.authError) throw unauthenticated(ctx.authError);
  return ctx.viewer;
}

export function orders(v: Viewer, a: { saleId?: string | null; first?: number | null; after?: string | null }, ctx: Context) {
  if (a.saleId != null) assertId(a.saleId, 'saleId');
  return ctx.services.orders.ofCustomer(v.id, a, readVia(ctx));
}

export function reservations(v: Viewer, saleId: string | null | undefined, ctx: Context) {
  if (saleId != null) assertId(saleId, 'saleId');
  return ctx.services.reservations.ofCustomer(v.id, saleId ?? null);
}
