import * as live from '../resolvers/subscriptions.js';
import type { StockLevelView, StockUpdateView } from '../services/live/sale-feed.js';
import { builder } from './builder.js';
import { Order, Reservation } from './buying.js';
import { Sale, SaleItem, SaleStatusEnum } from './sale.js';
import { saleIdOf } from '../services/ids.js';

const StockLevel = builder.objectRef<StockLevelView>('StockLevel').implement({
  fields: (t) => ({
    saleItemId: t.exposeID('saleItemId'),
    saleItem: t.field({
      type: SaleItem,
      description: "the item, as a normalized cache (Apollo's, urql's Graphcache) keeps it: SaleItem:<id>, with this event's available, reserved and sold",
      resolve: (l) => ({ id: l.saleItemId, sale_id: saleIdOf(l.saleItemId) ?? '', ofEvent: l }),
    }),
    available: t.exposeInt('available'),
    reserved: t.exposeInt('reserved'),
    sold: t.exposeInt('sold'),
  }),
});

const StockUpdate = builder.objectRef<StockUpdateView>('StockUpdate').implement({
  fields: (t) => ({
    saleId: t.exposeID('saleId'),
    status: t.field({ type: SaleStatusEnum, resolve: (u) => u.status }),
    version: t.exposeFloat('version', { description: "increases with every change of the sale's stock; order events and query snapshots by it" }),
    items: t.field({ type: [StockLevel], description: 'every item of the sale, read from Redis in one call', resolve: (u) => u.items }),
    at: t.field({ type: 'DateTime', resolve: (u) => u.at }),
  }),
});

builder.subscriptionType({
  description: "Every subscription's first event is the current state. Stock and status need no token; the others are the viewer's own.",
});

builder.subscriptionFields((t) => ({
  stockChanged: t.field({
    type: StockUpdate,
    description: 'Coalesced: at most ~10 events a second per sale; the latest state is always delivered.',
    args: { saleId: t.arg.id({ required: true }) },
    subscribe: (_r, a, ctx) => live.stockChanged(a.saleId, ctx),
    resolve: (state) => live.stockUpdateOf(state),
  }),
  saleStatusChanged: t.field({
    type: Sale,
    args: { saleId: t.arg.id({ required: true }) },
    subscribe: (_r, a, ctx) => live.saleStatusChanged(a.saleId, ctx),
    resolve: (state, _a, ctx) => live.saleOfStatusEvent(state, ctx),
  }),
  reservationChanged: t.field({
    type: Reservation,
    description: "The viewer's reservations: created, confirmed, released, expired (with endReason).",
    authScopes: { customer: true },
    args: { saleId: t.arg.id() },
    subscribe: (_r, a, ctx) => live.reservationChanged(a.saleId, ctx),
    resolve: (r, _a, ctx) => live.freshReservation(r, ctx),
  }),
  orderChanged: t.field({
    type: Order,
    description: "The viewer's orders: confirmed, cancelled.",
    authScopes: { customer: true },
    subscribe: (_r, _a, ctx) => live.orderChanged(ctx),
    resolve: (o, _a, ctx) => live.freshOrder(o, ctx),
  }),
}));
