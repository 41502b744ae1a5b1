import type { Context } from '../schema/context.js';
import type { Viewer } from '../services/auth.js';
import { notFound, unauthenticated } from '../services/errors.js';
import type { WaitlistEntryView } from '../services/waitlist.js';
import { assertId } from '../services/validation.js';

export function join(saleItemId: string, quantity: number, ctx: Context) {
  return ctx.services.waitlist.join(ctx.viewer!, saleItemId, quantity);
}
export function leave(saleItemId: string, ctx: Context) {
  return ctx.services.waitlist.leave(ctx.viewer!, saleItemId);
}
export function entriesOf(v: Viewer, saleId: string | null | undefined, ctx: Context) {
  if (saleId != null) assertId(saleId, 'saleId');
  return ctx.services.waitlist.entriesOf(v.id, saleId ?? null);
}
export async function saleItemOf(e: WaitlistEntryView, ctx: Context) {
  const item = await ctx.loaders.saleItem.load(e.saleItemId);
  if (!item) throw notFound('sale item');
  return item;
}
export function offerOf(e: WaitlistEntryView, ctx: Context) {
  return e.offerId ? ctx.services.reservations.byId(e.offerId) : null;
}

/** Viewer streams are refused before they open (scope-auth checks each event, too late). */
export function changes(saleId: string, ctx: Context) {
  if (!ctx.viewer) throw unauthenticated(ctx.authError ?? undefined);
  assertId(saleId, 'saleId');
  return ctx.services.live.waitlistChanged(ctx.viewer, saleId);
}
