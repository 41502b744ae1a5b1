import type { OrderRow } from '../db/types.js';
import type { Context } from '../schema/context.js';
import type { FeedState } from '../services/live/sale-feed.js';
import type { ReservationView } from '../services/reservations.js';
import type { Viewer } from '../services/auth.js';
import { unauthenticated } from '../services/errors.js';
import { assertId } from '../services/validation.js';

/**
 * Scope-auth checks subscription fields when each event is resolved, after the stream was
 * opened; viewer streams must be refused before they open.
 */
function viewerOf(ctx: Context): Viewer {
  if (!ctx.viewer) throw unauthenticated(ctx.authError ?? undefined);
  return ctx.viewer;
}

export function stockChanged(saleId: string, ctx: Context) {
  assertId(saleId, 'saleId');
  return ctx.services.live.stockChanged(saleId);
}
export function stockUpdateOf(state: FeedState) {
  return state.stock;
}

export function saleStatusChanged(saleId: string, ctx: Context) {
  assertId(saleId, 'saleId');
  return ctx.services.live.saleStatusChanged(saleId);
}
/**
 * A subscription's context lives as long as the subscription, and so do its loaders' caches.
 * Each event shows the state it was emitted for: the sale's fields read the snapshot whose
 * status was compared, not one cached by an earlier event.
 */
export function saleOfStatusEvent(state: FeedState, ctx: Context) {
  const { sale, snapshot } = state.status;
  ctx.loaders.snapshot.clear(sale.id).prime(sale.id, snapshot);
  ctx.loaders.sale.clear(sale.id).prime(sale.id, sale);
  return sale;
}

export function reservationChanged(saleId: string | null | undefined, ctx: Context) {
  const viewer = viewerOf(ctx);
  if (saleId != null) assertId(saleId, 'saleId');
  return ctx.services.live.reservationChanged(viewer, saleId ?? null);
}
export function orderChanged(ctx: Context) {
  return ctx.services.live.orderChanged(viewerOf(ctx));
}
/** Live figures and orders a viewer event leads to are read again for every event (see above). */
export function freshReservation(r: ReservationView, ctx: Context) {
  ctx.loaders.snapshot.clearAll();
  ctx.loaders.order.clearAll();
  return r;
}
export function freshOrder(o: OrderRow, ctx: Context) {
  ctx.loaders.snapshot.clearAll();
  return o;
}
