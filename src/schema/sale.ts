import type { SaleItemRow, SaleRow } from '../db/types.js';
import * as sales from '../resolvers/sales.js';
import { notFound } from '../services/errors.js';
import { builder } from './builder.js';
import { Product } from './catalog.js';
import { connection } from './common.js';
import type { Context } from './context.js';

export const SaleStatusEnum = builder.enumType('SaleStatus', {
  values: ['SCHEDULED', 'ACTIVE', 'PAUSED', 'SOLD_OUT', 'ENDED', 'CANCELLED'] as const,
});

/**
 * A sale item as a stock event shows it (`StockLevel.saleItem`): its id and the event's figures,
 * with no read at all; any other field reads the sale's item rows (cached by revision).
 */
export interface SaleItemOfEvent {
  id: string;
  sale_id: string;
  ofEvent: { available: number; reserved: number; sold: number };
}

export const Sale = builder.objectRef<SaleRow>('Sale');
export const SaleItem = builder.objectRef<SaleItemRow | SaleItemOfEvent>('SaleItem');

function isOfEvent(i: SaleItemRow | SaleItemOfEvent): i is SaleItemOfEvent {
  return 'ofEvent' in i;
}

/** The row of an item shown by a stock event (a row as it is). */
async function rowOf(i: SaleItemOfEvent, ctx: Context): Promise<SaleItemRow> {
  const row = (await ctx.loaders.saleItemsOfSale.load(i.sale_id)).find((r) => r.id === i.id);
  if (!row) throw notFound('sale item');
  return row;
}

Sale.implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    name: t.exposeString('name'),
    startsAt: t.field({ type: 'DateTime', resolve: (s) => s.starts_at }),
    endsAt: t.field({ type: 'DateTime', resolve: (s) => s.ends_at }),
    status: t.field({ type: SaleStatusEnum, resolve: (s, _a, ctx) => sales.status(s, ctx) }),
    perUserLimit: t.exposeInt('per_user_limit'),
    holdSeconds: t.exposeInt('hold_seconds'),
    waitingRoom: t.exposeBoolean('waiting_room'),
    admitPerSecond: t.exposeInt('admit_per_second', { nullable: true }),
    currency: t.exposeString('currency'),
    items: t.field({ type: [SaleItem], resolve: (s, _a, ctx) => ctx.loaders.saleItemsOfSale.load(s.id) }),
    available: t.int({ resolve: (s, _a, ctx) => sales.saleAvailable(s, ctx) }),
    soldOutAt: t.field({ type: 'DateTime', nullable: true, resolve: (s, _a, ctx) => sales.soldOutAt(s, ctx) }),
  }),
});

SaleItem.implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    sale: t.field({ type: Sale, resolve: (i, _a, ctx) => sales.saleOf(i.sale_id, ctx) }),
    product: t.field({ type: Product, resolve: (i, _a, ctx) => (isOfEvent(i) ? rowOf(i, ctx).then((r) => sales.productOf(r.product_id, ctx)) : sales.productOf(i.product_id, ctx)) }),
    priceCents: t.int({ resolve: (i, _a, ctx) => (isOfEvent(i) ? rowOf(i, ctx).then((r) => r.price_cents) : i.price_cents) }),
    initialStock: t.int({ resolve: (i, _a, ctx) => (isOfEvent(i) ? rowOf(i, ctx).then((r) => r.initial_stock) : i.initial_stock) }),
    available: t.int({ resolve: async (i, _a, ctx) => (isOfEvent(i) ? i.ofEvent : await sales.itemLevel(i, ctx)).available }),
    reserved: t.int({ resolve: async (i, _a, ctx) => (isOfEvent(i) ? i.ofEvent : await sales.itemLevel(i, ctx)).reserved }),
    sold: t.int({ resolve: async (i, _a, ctx) => (isOfEvent(i) ? i.ofEvent : await sales.itemLevel(i, ctx)).sold }),
  }),
});

const SaleConnection = connection<SaleRow>('Sale', Sale);

const SaleItemInput = builder.inputType('SaleItemInput', {
  fields: (t) => ({
    productId: t.id({ required: true }),
    priceCents: t.int({ required: true }),
    stock: t.int({ required: true }),
  }),
});

const ScheduleSaleInput = builder.inputType('ScheduleSaleInput', {
  fields: (t) => ({
    name: t.string({ required: true }),
    startsAt: t.field({ type: 'DateTime', required: true }),
    endsAt: t.field({ type: 'DateTime', required: true }),
    perUserLimit: t.int({ required: true, defaultValue: 2 }),
    holdSeconds: t.int({ required: true, defaultValue: 120 }),
    waitingRoom: t.boolean({ required: true, defaultValue: false }),
    admitPerSecond: t.int(),
    items: t.field({ type: [SaleItemInput], required: true }),
  }),
});

const UpdateSaleInput = builder.inputType('UpdateSaleInput', {
  fields: (t) => ({
    name: t.string(),
    startsAt: t.field({ type: 'DateTime' }),
    endsAt: t.field({ type: 'DateTime' }),
    perUserLimit: t.int(),
    holdSeconds: t.int(),
  }),
});

builder.queryFields((t) => ({
  serverTime: t.field({ type: 'DateTime', resolve: () => new Date() }),
  sale: t.field({ type: Sale, nullable: true, args: { id: t.arg.id({ required: true }) }, resolve: (_r, a, ctx) => sales.sale(a.id, ctx) }),
  sales: t.field({
    type: SaleConnection,
    args: { status: t.arg({ type: [SaleStatusEnum] }), first: t.arg.int({ defaultValue: 20 }), after: t.arg.string() },
    resolve: (_r, a, ctx) => sales.list(a, ctx),
  }),
  saleItem: t.field({ type: SaleItem, nullable: true, args: { id: t.arg.id({ required: true }) }, resolve: (_r, a, ctx) => sales.saleItem(a.id, ctx) }),
}));

builder.mutationFields((t) => ({
  scheduleSale: t.field({
    type: Sale,
    authScopes: { admin: true },
    args: { input: t.arg({ type: ScheduleSaleInput, required: true }) },
    resolve: (_r, a, ctx) => sales.schedule(a.input, ctx),
  }),
  updateSale: t.field({
    type: Sale,
    authScopes: { admin: true },
    args: { id: t.arg.id({ required: true }), input: t.arg({ type: UpdateSaleInput, required: true }) },
    resolve: (_r, a, ctx) => sales.update(a.id, a.input, ctx),
  }),
  pauseSale: t.field({ type: Sale, authScopes: { admin: true }, args: { id: t.arg.id({ required: true }) }, resolve: (_r, a, ctx) => sales.pause(a.id, ctx) }),
  resumeSale: t.field({ type: Sale, authScopes: { admin: true }, args: { id: t.arg.id({ required: true }) }, resolve: (_r, a, ctx) => sales.resume(a.id, ctx) }),
  cancelSale: t.field({ type: Sale, authScopes: { admin: true }, args: { id: t.arg.id({ required: true }) }, resolve: (_r, a, ctx) => sales.cancel(a.id, ctx) }),
  adjustStock: t.field({
    type: SaleItem,
    authScopes: { admin: true },
    args: { saleItemId: t.arg.id({ required: true }), delta: t.arg.int({ required: true }), reason: t.arg.string({ required: true }) },
    resolve: (_r, a, ctx) => sales.adjust(a, ctx),
  }),
}));
