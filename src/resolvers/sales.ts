import type { SaleItemRow, SaleRow } from '../db/types.js';
import { readVia, type Context } from '../schema/context.js';
import { notFound, UnavailableError } from '../services/errors.js';
import { deriveStatus, type SaleStatus } from '../services/sale-status.js';
import type { ScheduleSaleInput, UpdateSaleInput } from '../services/sales.js';
import type { SaleSnapshot } from '../services/stock/engine.js';
import { assertId } from '../services/validation.js';
import { GraphQLError } from 'graphql';

async function snapshotOf(saleId: string, ctx: Context): Promise<SaleSnapshot> {
  const snap = await ctx.loaders.snapshot.load(saleId);
  if (snap instanceof UnavailableError) {
    throw new GraphQLError('Live stock is being rebuilt; retry shortly.', { extensions: { code: 'TEMPORARILY_UNAVAILABLE', retryAfterSeconds: snap.retryAfterSeconds } });
  }
  if (snap instanceof Error) throw snap;
  return snap;
}

export async function status(sale: SaleRow, ctx: Context): Promise<SaleStatus> {
  return deriveStatus(await snapshotOf(sale.id, ctx));
}
export async function saleAvailable(sale: SaleRow, ctx: Context) {
  return (await snapshotOf(sale.id, ctx)).available;
}
export async function soldOutAt(sale: SaleRow, ctx: Context) {
  const at = (await snapshotOf(sale.id, ctx)).soldOutAt;
  return at != null ? new Date(at) : sale.sold_out_at;
}
export async function itemLevel(item: SaleItemRow, ctx: Context) {
  const level = (await snapshotOf(item.sale_id, ctx)).items.get(item.id);
  return level ?? { available: 0, reserved: 0, sold: 0 };
}
export async function saleOf(saleId: string, ctx: Context) {
  const sale = await ctx.loaders.sale.load(saleId);
  if (!sale) throw notFound('sale');
  return sale;
}
export async function productOf(productId: string, ctx: Context) {
  const product = await ctx.loaders.product.load(productId);
  if (!product) throw notFound('product');
  return product;
}

export function sale(id: string, ctx: Context) {
  assertId(id, 'id');
  return ctx.loaders.sale.load(id);
}
export function saleItem(id: string, ctx: Context) {
  assertId(id, 'id');
  return ctx.loaders.saleItem.load(id);
}
export function list(args: { status?: SaleStatus[] | null; first?: number | null; after?: string | null }, ctx: Context) {
  return ctx.services.sales.sales(args, readVia(ctx));
}

export function schedule(input: ScheduleSaleInput, ctx: Context) {
  return ctx.services.sales.scheduleSale(input);
}
export function update(id: string, input: UpdateSaleInput, ctx: Context) {
  assertId(id, 'id');
  return ctx.services.sales.updateSale(id, input);
}
export function pause(id: string, ctx: Context) {
  assertId(id, 'id');
  return ctx.services.sales.pauseSale(id);
}
export function resume(id: string, ctx: Context) {
  assertId(id, 'id');
  return ctx.services.sales.resumeSale(id);
}
export function cancel(id: string, ctx: Context) {
  assertId(id, 'id');
  return ctx.services.sales.cancelSale(id);
}
export function adjust(a: { saleItemId: string; delta: number; reason: string }, ctx: Context) {
  assertId(a.saleItemId, 'saleItemId');
  return ctx.services.sales.adjustStock(a.saleItemId, a.delta, a.reason, ctx.viewer!.id);
}
