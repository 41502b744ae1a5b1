import type { OrderRow } from '../db/types.js';
import { readVia, type Context } from '../schema/context.js';
import { notFound } from '../services/errors.js';
import type { BuyInput } from '../services/purchases.js';
import type { ReservationView } from '../services/reservations.js';
import { assertId } from '../services/validation.js';

const END_REASONS = new Set(['EXPIRED', 'CUSTOMER', 'ADMIN', 'SALE_CANCELLED', 'CONFIRM_FAILED', 'STOCK_REBUILT']);

export function purchase(input: BuyInput & { delivery?: unknown }, ctx: Context) {
  return ctx.services.purchases.purchase(ctx.viewer!, input, ctx.rateChecks);
}
export function reserve(input: BuyInput, ctx: Context) {
  return ctx.services.purchases.reserve(ctx.viewer!, input, ctx.rateChecks);
}
export function confirm(reservationId: string, delivery: unknown, ctx: Context) {
  return ctx.services.purchases.confirmReservation(ctx.viewer!, reservationId, delivery);
}
export function release(reservationId: string, ctx: Context) {
  return ctx.services.purchases.releaseReservation(ctx.viewer!, reservationId);
}
export function cancelOrder(orderId: string, ctx: Context) {
  return ctx.services.purchases.cancelOrder(ctx.viewer!, orderId);
}

export function order(id: string, ctx: Context) {
  assertId(id, 'id');
  return ctx.services.orders.visible(ctx.viewer, id, readVia(ctx));
}
export function reservation(id: string, ctx: Context) {
  assertId(id, 'id');
  return ctx.services.reservations.visible(ctx.viewer, id, readVia(ctx));
}
export function saleOrders(a: { saleId: string; status?: OrderRow['status'] | null; first?: number | null; after?: string | null }, ctx: Context) {
  assertId(a.saleId, 'saleId');
  return ctx.services.orders.ofSale(a.saleId, a, readVia(ctx));
}

export async function saleItemOf(id: string, ctx: Context) {
  const item = await ctx.loaders.saleItem.load(id);
  if (!item) throw notFound('sale item');
  return item;
}

export function endReasonOf(r: ReservationView) {
  if (r.status !== 'RELEASED' && r.status !== 'EXPIRED') return null;
  return (END_REASONS.has(r.endReason ?? '') ? r.endReason : r.status === 'EXPIRED' ? 'EXPIRED' : 'ADMIN') as
    'EXPIRED' | 'CUSTOMER' | 'ADMIN' | 'SALE_CANCELLED' | 'CONFIRM_FAILED' | 'STOCK_REBUILT';
}

/** Delivery details are shown to their customer and to admins only. */
export function deliveryOf(o: OrderRow, ctx: Context) {
  if (!o.delivery_enc || !ctx.viewer) return null;
  if (ctx.viewer.role !== 'admin' && ctx.viewer.id !== o.customer_id) return null;
  return ctx.services.delivery.open(o.delivery_enc);
}
