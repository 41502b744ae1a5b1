import { readVia, type Context } from '../schema/context.js';
import { assertId } from '../services/validation.js';

export async function saleSummary(saleId: string, ctx: Context) {
  assertId(saleId, 'saleId');
  const sale = await ctx.loaders.sale.load(saleId);
  return sale ? ctx.services.summary.summary(sale, readVia(ctx)) : null;
}

export function stockEvents(a: { saleItemId: string; first?: number | null; after?: string | null }, ctx: Context) {
  assertId(a.saleItemId, 'saleItemId');
  return ctx.services.ledger.events(a.saleItemId, a);
}
