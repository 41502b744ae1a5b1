import { sql } from 'kysely';
import { z } from 'zod';
import type { Db } from '../db/database.js';
import type { SaleItemRow, SaleRow } from '../db/types.js';
import { badUserInput, notFound, UnavailableError } from './errors.js';
import { newChildId, newId, saleIdOf } from './ids.js';
import { decodeCursor, pageSize, toPage, type Page } from './pagination.js';
import { deriveStatus, type SaleStatus } from './sale-status.js';
import type { SaleSnapshot, StockEngine } from './stock/engine.js';
import type { SaleEvents } from './sale-events.js';
import type { StockRecovery } from './stock-recovery.js';
import { zodToBadInput } from './zod-errors.js';

const MAX_STOCK = 10_000_000;

const scheduleInput = z
  .object({
    name: z.string().trim().min(1).max(200),
    startsAt: z.date(),
    endsAt: z.date(),
    perUserLimit: z.number().int().min(1).max(1000),
    holdSeconds: z.number().int().min(1).max(86_400),
    waitingRoom: z.boolean(),
    admitPerSecond: z.number().int().min(1).max(1_000_000).nullish(),
    items: z
      .array(
        z.object({
          productId: z.string().min(1).max(64),
          priceCents: z.number().int().min(0).max(2_000_000_000),
          stock: z.number().int().min(1).max(MAX_STOCK),
        }),
      )
      .min(1, 'a sale has 1 to 100 items')
      .max(100, 'a sale has 1 to 100 items'),
  })
  .refine((s) => s.startsAt < s.endsAt, { path: ['endsAt'], message: 'endsAt must be after startsAt' })
  .refine((s) => !s.waitingRoom || s.admitPerSecond != null, { path: ['admitPerSecond'], message: 'a sale with a waiting room needs admitPerSecond' })
  .refine((s) => new Set(s.items.map((i) => i.productId)).size === s.items.length, { path: ['items'], message: 'each product may appear once per sale' });
export type ScheduleSaleInput = z.input<typeof scheduleInput>;

const updateInput = z.object({
  name: z.string().trim().min(1).max(200).nullish(),
  startsAt: z.date().nullish(),
  endsAt: z.date().nullish(),
  perUserLimit: z.number().int().min(1).max(1000).nullish(),
  holdSeconds: z.number().int().min(1).max(86_400).nullish(),
});
export type UpdateSaleInput = z.input<typeof updateInput>;

/** Immutable facts about an item that the purchase path needs; cached for the process' life. */
export interface ItemFacts {
  saleId: string;
  saleItemId: string;
  unitPriceCents: number;
}

export class SalesService {
  private readonly itemFacts = new Map<string, ItemFacts>();

  constructor(
    private readonly db: Db,
    private readonly engine: StockEngine,
    private readonly events: SaleEvents,
    private readonly recovery: StockRecovery,
  ) {}

  async scheduleSale(input: ScheduleSaleInput): Promise<SaleRow> {
    const parsed = scheduleInput.safeParse(input);
    if (!parsed.success) throw zodToBadInput(parsed.error, 'input');
    const s = parsed.data;
    const products = await this.db.selectFrom('products').select(['id', 'currency']).where('id', 'in', s.items.map((i) => i.productId)).execute();
    const byId = new Map(products.map((p) => [p.id, p]));
    s.items.forEach((item, i) => {
      if (!byId.has(item.productId)) throw badUserInput(`input.items.${i}.productId names no product.`, `input.items.${i}.productId`);
    });
    const currencies = new Set(products.map((p) => p.currency));
    if (currencies.size > 1) throw badUserInput('Every item of a sale must be priced in one currency.', 'input.items');

    const saleId = newId();
    const sale = await this.db.transaction().execute(async (tx) => {
      const row = await tx
        .insertInto('sales')
        .values({
          id: saleId, name: s.name, starts_at: s.startsAt, ends_at: s.endsAt, per_user_limit: s.perUserLimit,
          hold_seconds: s.holdSeconds, waiting_room: s.waitingRoom, admit_per_second: s.waitingRoom ? (s.admitPerSecond ?? null) : null,
          currency: [...currencies][0], state: 'OPEN',
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      await tx
        .insertInto('sale_items')
        .values(s.items.map((it, i) => ({ id: newChildId(saleId), sale_id: saleId, product_id: it.productId, position: i, price_cents: it.priceCents, initial_stock: it.stock })))
        .execute();
      return row;
    });
    await this.goLive(sale);
    return sale;
  }

  /** Creates the sale's live state in Redis from PostgreSQL; a no-op when it exists. */
  async goLive(sale: SaleRow): Promise<void> {
    const items = await this.db.selectFrom('sale_items').select(['id', 'initial_stock']).where('sale_id', '=', sale.id).execute();
    await this.engine.initSale(sale.id, {
      startsAt: sale.starts_at.getTime(), endsAt: sale.ends_at.getTime(), perUserLimit: sale.per_user_limit,
      holdSeconds: sale.hold_seconds, state: sale.state, waitingRoom: sale.waiting_room,
      items: items.map((i) => ({ id: i.id, stock: i.initial_stock })),
    });
  }

  async updateSale(id: string, input: UpdateSaleInput): Promise<SaleRow> {
    const parsed = updateInput.safeParse(input);
    if (!parsed.success) throw zodToBadInput(parsed.error, 'input');
    const u = parsed.data;
    const sale = await this.requireSale(id);
    const status = await this.statusOf(sale);
    if (status !== 'SCHEDULED') throw badUserInput(`The sale can only be changed while SCHEDULED; it is ${status}.`);
    const startsAt = u.startsAt ?? sale.starts_at;
    const endsAt = u.endsAt ?? sale.ends_at;
    if (startsAt >= endsAt) throw badUserInput('input.endsAt: endsAt must be after startsAt', 'input.endsAt');
    const row = await this.db
      .updateTable('sales')
      .set({
        name: u.name ?? sale.name, starts_at: startsAt, ends_at: endsAt,
        per_user_limit: u.perUserLimit ?? sale.per_user_limit, hold_seconds: u.holdSeconds ?? sale.hold_seconds,
      })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    await this.engine.setSale(id, { start: startsAt.getTime(), end: endsAt.getTime(), limit: row.per_user_limit, hold: row.hold_seconds });
    await this.events.saleChanged(id);
    return row;
  }

  async pauseSale(id: string): Promise<SaleRow> {
    return this.changeState(id, 'PAUSED', (status) => (status === 'ENDED' || status === 'CANCELLED' ? `A sale that is ${status} cannot be paused.` : null));
  }

  async resumeSale(id: string): Promise<SaleRow> {
    return this.changeState(id, 'OPEN', (status, sale) => (sale.state !== 'PAUSED' || status === 'ENDED' ? `Only a paused sale can be resumed; it is ${status}.` : null));
  }

  async cancelSale(id: string): Promise<SaleRow> {
    return this.changeState(id, 'CANCELLED', (status) => (status === 'ENDED' || status === 'CANCELLED' ? `A sale that is ${status} cannot be cancelled.` : null));
  }

  private async changeState(id: string, state: SaleRow['state'], refuse: (status: SaleStatus, sale: SaleRow) => string | null): Promise<SaleRow> {
    const sale = await this.requireSale(id);
    const why = refuse(await this.statusOf(sale), sale);
    if (why) throw badUserInput(why);
    const row = await this.db.updateTable('sales').set({ state }).where('id', '=', id).returningAll().executeTakeFirstOrThrow();
    const result = await this.engine.setSale(id, { state });
    await this.events.holdsEnded(id, result.ended);
    await this.events.saleChanged(id);
    return row;
  }

  async adjustStock(saleItemId: string, delta: number, reason: string, adminId: string): Promise<SaleItemRow> {
    if (!Number.isInteger(delta) || delta === 0 || Math.abs(delta) > MAX_STOCK) throw badUserInput(`delta must be a non-zero whole number within ±${MAX_STOCK}.`, 'delta');
    if (reason.trim().length === 0 || reason.length > 500) throw badUserInput('reason must be 1 to 500 characters.', 'reason');
    const item = await this.db.selectFrom('sale_items').selectAll().where('id', '=', saleItemId).executeTakeFirst();
    if (!item) throw notFound('sale item');
    const sale = await this.requireSale(item.sale_id);
    const status = await this.statusOf(sale);
    if (status === 'ENDED' || status === 'CANCELLED') throw badUserInput(`Stock of a ${status} sale cannot be adjusted.`);
    const r = await this.engine.adjust(item.sale_id, saleItemId, delta, reason, adminId);
    if (r.ok) {
      // Durable at once: a rebuild after Redis data loss must know every adjustment.
      await this.db.insertInto('stock_adjustments').values({ sale_id: item.sale_id, sale_item_id: saleItemId, delta, reason, admin_id: adminId }).execute();
    } else {
      if (r.code === 'INSUFFICIENT_AVAILABLE') throw badUserInput(`Only ${r.available} units are available to remove; held and sold units cannot be taken away.`, 'delta');
      if (r.code === 'NO_SALE') throw new UnavailableError('live stock is being rebuilt');
      throw notFound('sale item');
    }
    await this.events.holdsEnded(item.sale_id, r.ended);
    await this.events.stockChanged(item.sale_id);
    return item;
  }

  async requireSale(id: string): Promise<SaleRow> {
    const [sale] = await this.salesByIds([id]);
    if (!sale) throw notFound('sale');
    return sale;
  }

  async salesByIds(ids: readonly string[]): Promise<(SaleRow | null)[]> {
    if (ids.length === 0) return [];
    const rows = await this.db.selectFrom('sales').selectAll().where('id', 'in', [...ids]).execute();
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.map((id) => byId.get(id) ?? null);
  }

  async itemsBySaleIds(saleIds: readonly string[]): Promise<SaleItemRow[][]> {
    if (saleIds.length === 0) return [];
    const rows = await this.db.selectFrom('sale_items').selectAll().where('sale_id', 'in', [...saleIds]).orderBy('position').execute();
    return saleIds.map((id) => rows.filter((r) => r.sale_id === id));
  }

  async itemsByIds(ids: readonly string[]): Promise<(SaleItemRow | null)[]> {
    if (ids.length === 0) return [];
    const rows = await this.db.selectFrom('sale_items').selectAll().where('id', 'in', [...ids]).execute();
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.map((id) => byId.get(id) ?? null);
  }

  /** Price and sale of an item, from memory after the first look-up: they never change. */
  async itemFactsOf(saleItemId: string): Promise<ItemFacts | null> {
    const cached = this.itemFacts.get(saleItemId);
    if (cached) return cached;
    if (!saleIdOf(saleItemId)) return null;
    const row = await this.db.selectFrom('sale_items').select(['id', 'sale_id', 'price_cents']).where('id', '=', saleItemId).executeTakeFirst();
    if (!row) return null;
    const facts = { saleId: row.sale_id, saleItemId: row.id, unitPriceCents: row.price_cents };
    this.itemFacts.set(saleItemId, facts);
    return facts;
  }

  /** Live figures; a sale Redis has lost is rebuilt first (meanwhile: retry later). */
  async snapshot(saleId: string): Promise<SaleSnapshot> {
    const snap = await this.engine.snapshot(saleId);
    if (snap) return snap;
    const sale = await this.requireSale(saleId);
    const outcome = await this.recovery.ensureLive(sale);
    const again = outcome === 'waiting' || outcome === 'busy' ? null : await this.engine.snapshot(saleId);
    if (!again) throw new UnavailableError('live stock of this sale is being rebuilt', this.recovery.retryAfterSeconds(saleId));
    return again;
  }

  async statusOf(sale: SaleRow): Promise<SaleStatus> {
    return deriveStatus(await this.snapshot(sale.id));
  }

  async sales(args: { status?: readonly SaleStatus[] | null; first?: number | null; after?: string | null }): Promise<Page<SaleRow>> {
    const size = pageSize(args.first);
    let after = decodeCursor(args.after);
    const wanted = args.status && args.status.length > 0 ? new Set(args.status) : null;
    const out: SaleRow[] = [];
    // Status is live (clock and stock), so filtering happens after reading; scan in batches.
    for (;;) {
      let q = this.db.selectFrom('sales').selectAll().orderBy('starts_at', 'desc').orderBy('id', 'desc').limit(200);
      if (after) q = q.where(sql<boolean>`(starts_at, id) < (${new Date(Number(after[0]))}, ${after[1]})`);
      const rows = await q.execute();
      for (const row of rows) {
        if (!wanted || wanted.has(await this.statusOf(row))) out.push(row);
        if (out.length > size) break;
      }
      if (out.length > size || rows.length < 200) break;
      const last = rows[rows.length - 1];
      after = [last.starts_at.getTime(), last.id];
    }
    return toPage(out, size, (r) => [r.starts_at.getTime(), r.id]);
  }
}
