import type { StockEventRow } from '../db/types.js';
import type { SaleSummary as Summary } from '../services/summary.js';
import * as admin from '../resolvers/admin.js';
import { builder } from './builder.js';
import { connection, ErrorCodeEnum } from './common.js';
import { Sale } from './sale.js';

const StockEventKind = builder.enumType('StockEventKind', {
  values: ['INITIAL', 'RESERVED', 'RELEASED', 'EXPIRED', 'CONFIRMED', 'CANCELLED', 'ADJUSTED'] as const,
});

const StockEvent = builder.objectRef<StockEventRow>('StockEvent').implement({
  fields: (t) => ({
    id: t.id({ resolve: (e) => String(e.id) }),
    saleItemId: t.exposeID('sale_item_id'),
    kind: t.field({ type: StockEventKind, resolve: (e) => e.kind }),
    delta: t.exposeInt('delta'),
    availableAfter: t.exposeInt('available_after'),
    customerId: t.exposeID('customer_id', { nullable: true }),
    reason: t.exposeString('reason', { nullable: true }),
    at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
  }),
});
const StockEventConnection = connection<StockEventRow>('StockEvent', StockEvent);

const RejectionCount = builder.objectRef<Summary['rejections'][number]>('RejectionCount').implement({
  fields: (t) => ({ code: t.field({ type: ErrorCodeEnum, resolve: (r) => r.code }), count: t.exposeInt('count') }),
});

const SaleSummary = builder.objectRef<Summary>('SaleSummary').implement({
  fields: (t) => ({
    sale: t.field({ type: Sale, resolve: (s) => s.sale }),
    unitsSold: t.exposeInt('unitsSold'),
    orders: t.exposeInt('orders'),
    uniqueBuyers: t.exposeInt('uniqueBuyers'),
    revenueCents: t.field({ type: 'BigInt', resolve: (s) => s.revenueCents }),
    attempts: t.field({ type: 'BigInt', resolve: (s) => s.attempts }),
    rejections: t.field({ type: [RejectionCount], resolve: (s) => s.rejections }),
    reservationsExpired: t.exposeInt('reservationsExpired'),
    waitlistSize: t.exposeInt('waitlistSize'),
    soldOutAt: t.field({ type: 'DateTime', nullable: true, resolve: (s) => s.soldOutAt }),
    sellOutSeconds: t.float({ nullable: true, resolve: (s) => s.sellOutSeconds }),
  }),
});

builder.queryFields((t) => ({
  saleSummary: t.field({
    type: SaleSummary,
    nullable: true,
    authScopes: { admin: true },
    args: { saleId: t.arg.id({ required: true }) },
    resolve: (_r, a, ctx) => admin.saleSummary(a.saleId, ctx),
  }),
  stockEvents: t.field({
    type: StockEventConnection,
    authScopes: { admin: true },
    args: { saleItemId: t.arg.id({ required: true }), first: t.arg.int({ defaultValue: 100 }), after: t.arg.string() },
    resolve: (_r, a, ctx) => admin.stockEvents(a, ctx),
  }),
}));
