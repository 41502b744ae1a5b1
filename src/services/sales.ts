import { z } from 'zod';
import type { Db } from '../db/database.js';
import { DbRouter, type ReadVia } from '../db/read-routing.js';
import type { SaleItemRow, SaleRow } from '../db/types.js';
import { badUserInput, notFound, UnavailableError } from './errors.js';
import { newChildId, newId, saleIdOf } from './ids.js';
import { afterRow, decodeCursor, pageSize, requireCursorRow, toPage, type CursorScope, type Page } from './pagination.js';
import { SaleRowsCache } from './sale-rows-cache.js';
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

/** Where a read gets a sale's live snapshot from: a request's loader, so one script call serves the rows and the figures. */
export type SnapshotSource = (saleId: string) => Promise<SaleSnapshot | Error>;

/** The adjust script refused: rolls back the transaction around it. */
class AdjustRefused extends Error {
  constructor(readonly outcome: Awaited<ReturnType<StockEngine['adjust']>>) {
    super('adjustment refused by the live state');
  }
}

export class SalesService {
  private readonly itemFacts = new Map<string, ItemFacts>();
  private readonly rows = new SaleRowsCache();
  /** Snapshot calls not yet sent to Redis, per sale: callers in the same turn of the event loop share one. */
  private readonly pendingSnapshots = new Map<string, Promise<SaleSnapshot | null>>();
  /** Sales this process is giving a first revision (see `revisionOf`). */
  private readonly stamping = new Map<string, Promise<void>>();

  constructor(
    private readonly db: Db,
    private readonly engine: StockEngine,
    private readonly events: SaleEvents,
    private readonly recovery: StockRecovery,
    private readonly reads: DbRouter = DbRouter.primaryOnly(db),
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
      holdSeconds: sale.hold_seconds, state: sale.state, waitingRoom: sale.waiting_room, epoch: sale.live_epoch,
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
    // The new revision goes with the change, after the commit: every cached copy of the old row is now a miss.
    await this.engine.setSale(id, { start: startsAt.getTime(), end: endsAt.getTime(), limit: row.per_user_limit, hold: row.hold_seconds, rev: newId() });
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
    const result = await this.engine.setSale(id, { state, rev: newId() });
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
    // One transaction around the live change: PostgreSQL's stock (CHECK: never below CONFIRMED units)
    // and the durable adjustment commit only if the script accepted it, and the item's row stays
    // locked meanwhile. Should the commit fail after the script ran, the recovery check sees the
    // stock differ and rebuilds the sale from PostgreSQL.
    type Adjusted = Awaited<ReturnType<StockEngine['adjust']>>;
    let r: Adjusted;
    try {
      r = await this.db.transaction().execute(async (tx) => {
        // Shared lock on the sale row: a rebuild raises the epoch (and only then reads the stock)
        // after this commits, or this change sees the new epoch and meets a state of the old one.
        const { live_epoch: epoch } = await tx.selectFrom('sales').select('live_epoch').where('id', '=', item.sale_id).forShare().executeTakeFirstOrThrow();
        const { stock } = await tx.updateTable('sale_items').set((eb) => ({ stock: eb('stock', '+', delta) })).where('id', '=', saleItemId).returning('stock').executeTakeFirstOrThrow();
        await tx.insertInto('stock_adjustments').values({ sale_id: item.sale_id, sale_item_id: saleItemId, delta, reason, admin_id: adminId }).execute();
        const live = await this.engine.adjust(item.sale_id, saleItemId, delta, reason, adminId, { stock: stock - delta, epoch });
        if (!live.ok) throw new AdjustRefused(live);
        return live;
      });
    } catch (err) {
      if (err instanceof AdjustRefused) r = err.outcome;
      else if ((err as { constraint?: string }).constraint === 'sale_items_sold_within_stock') {
        throw badUserInput('That would take the stock below the units already sold.', 'delta');
      } else throw err;
    }
    if (!r.ok) {
      if (r.code === 'INSUFFICIENT_AVAILABLE') throw badUserInput(`Only ${r.available} units are available to remove; held and sold units cannot be taken away.`, 'delta');
      if (r.code === 'NO_SALE') throw new UnavailableError('live stock is being rebuilt');
      if (r.code === 'STALE') {
        this.recovery.requestRepair(item.sale_id, 'stock differs at an adjustment', 'repair');
        throw new UnavailableError('live stock is being brought up to date', 1);
      }
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

  async salesByIds(ids: readonly string[], db: Db = this.db): Promise<(SaleRow | null)[]> {
    if (ids.length === 0) return [];
    const rows = await db.selectFrom('sales').selectAll().where('id', 'in', [...ids]).execute();
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.map((id) => byId.get(id) ?? null);
  }

  async itemsBySaleIds(saleIds: readonly string[], db: Db = this.db): Promise<SaleItemRow[][]> {
    if (saleIds.length === 0) return [];
    const rows = await db.selectFrom('sale_items').selectAll().where('sale_id', 'in', [...saleIds]).orderBy('position').execute();
    return saleIds.map((id) => rows.filter((r) => r.sale_id === id));
  }

  /**
   * Sale rows for reads: from this process' cache while the sale's revision in Redis is the one
   * they were read under, else from PostgreSQL (also when Redis does not know the sale). Rows
   * cached under a revision are read from the primary: a replica behind the change that set the
   * revision would pin its old row to the new revision. Only rows without one may come from the
   * replica (with `via`).
   */
  async readSales(ids: readonly string[], snapshotOf: SnapshotSource = (id) => this.snapshotOrError(id), via?: ReadVia): Promise<(SaleRow | null)[]> {
    const revisions = await Promise.all(ids.map((id) => this.revisionOf(id, snapshotOf)));
    const out: (SaleRow | null | undefined)[] = ids.map((id, i) => (revisions[i] ? this.rows.sale(id, revisions[i]) : undefined));
    const missing = ids.filter((_, i) => out[i] === undefined);
    if (missing.length === 0) return out as (SaleRow | null)[];
    const unrevised = missing.filter((id) => !revisions[ids.indexOf(id)]);
    const revised = missing.filter((id) => revisions[ids.indexOf(id)]);
    const [a, b] = await Promise.all([this.salesByIds(revised), unrevised.length ? this.reads.db(via).then((db) => this.salesByIds(unrevised, db)) : []]);
    const fresh = new Map([...a, ...b].flatMap((row) => (row ? [[row.id, row] as const] : [])));
    return ids.map((id, i) => {
      if (out[i] !== undefined) return out[i];
      const row = fresh.get(id) ?? null;
      if (row && revisions[i]) this.rows.rememberSale(row, revisions[i]);
      return row;
    });
  }

  /** Items of each sale for reads, in position order; cached like `readSales`. */
  async readItemsOfSales(saleIds: readonly string[], snapshotOf: SnapshotSource = (id) => this.snapshotOrError(id), via?: ReadVia): Promise<SaleItemRow[][]> {
    const revisions = await Promise.all(saleIds.map((id) => this.revisionOf(id, snapshotOf)));
    const out = saleIds.map((id, i) => (revisions[i] ? this.rows.items(id, revisions[i]) : undefined));
    const missing = saleIds.filter((_, i) => out[i] === undefined);
    if (missing.length === 0) return out as SaleItemRow[][];
    const unrevised = missing.filter((id) => !revisions[saleIds.indexOf(id)]);
    const revised = missing.filter((id) => revisions[saleIds.indexOf(id)]);
    const [a, b] = await Promise.all([this.itemsBySaleIds(revised), unrevised.length ? this.reads.db(via).then((db) => this.itemsBySaleIds(unrevised, db)) : []]);
    const byId = new Map([...revised.map((id, i) => [id, a[i]] as const), ...unrevised.map((id, i) => [id, b[i]] as const)]);
    return saleIds.map((id, i) => {
      if (out[i] !== undefined) return out[i];
      const items = byId.get(id)!;
      // No items means no such sale (a sale has 1 to 100): nothing to remember.
      if (items.length > 0 && revisions[i]) this.rows.rememberItems(id, items, revisions[i]);
      return items;
    });
  }

  /**
   * The revision cached rows of the sale must carry, read from its snapshot; null when there is
   * none to check against, and the rows come from PostgreSQL. A live sale without a revision (new,
   * or rebuilt after Redis lost it) gets one, once: a fresh token, like an admin change writes.
   */
  private async revisionOf(saleId: string, snapshotOf: SnapshotSource): Promise<string | null> {
    const snap = await snapshotOf(saleId).catch((err: Error) => err);
    if (snap instanceof Error) return null;
    if (snap.revision == null && !this.stamping.has(saleId)) {
      const stamp = this.engine
        .setSale(saleId, { rev: newId() })
        .then((r) => this.events.holdsEnded(saleId, r.ended))
        .catch(() => undefined) // the next read tries again
        .finally(() => this.stamping.delete(saleId));
      this.stamping.set(saleId, stamp);
    }
    return snap.revision;
  }

  private snapshotOrError(saleId: string): Promise<SaleSnapshot | Error> {
    return this.snapshot(saleId).catch((err: Error) => err);
  }

  async itemsByIds(ids: readonly string[], via?: ReadVia): Promise<(SaleItemRow | null)[]> {
    if (ids.length === 0) return [];
    const db = await this.reads.db(via);
    const rows = await db.selectFrom('sale_items').selectAll().where('id', 'in', [...ids]).execute();
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

  /**
   * The sale's live state was found wrong: PostgreSQL refused an order Redis had allowed (`repair`:
   * replace it now), or something looked off (check it against PostgreSQL, repair if it is).
   */
  liveStateSuspect(saleId: string, reason: string, how: 'repair' | 'check'): void {
    this.recovery.requestRepair(saleId, reason, how);
  }

  /** Live figures; a sale Redis has lost is rebuilt first (meanwhile: retry later). */
  async snapshot(saleId: string): Promise<SaleSnapshot> {
    const snap = await this.liveSnapshot(saleId);
    if (snap) return snap;
    const sale = await this.requireSale(saleId);
    const outcome = await this.recovery.ensureLive(sale);
    const again = outcome === 'busy' || outcome === 'suspect' ? null : await this.engine.snapshot(saleId);
    if (!again) throw new UnavailableError('live stock of this sale is being rebuilt', this.recovery.retryAfterSeconds(saleId));
    return again;
  }

  /**
   * One snapshot script call for all callers of a sale in this turn of the event loop. The call is
   * sent after every caller asked, so each sees a state no older than its request; a call already
   * sent is never shared with a later caller.
   */
  private liveSnapshot(saleId: string): Promise<SaleSnapshot | null> {
    let pending = this.pendingSnapshots.get(saleId);
    if (!pending) {
      pending = new Promise((resolve, reject) => {
        setImmediate(() => {
          this.pendingSnapshots.delete(saleId);
          this.engine.snapshot(saleId).then(resolve, reject);
        });
      });
      this.pendingSnapshots.set(saleId, pending);
    }
    return pending;
  }

  async statusOf(sale: SaleRow): Promise<SaleStatus> {
    return deriveStatus(await this.snapshot(sale.id));
  }

  async sales(args: { status?: readonly SaleStatus[] | null; first?: number | null; after?: string | null }, via?: ReadVia): Promise<Page<SaleRow>> {
    const db = await this.reads.db(via);
    const size = pageSize(args.first);
    const cursor = decodeCursor('sale', args.after);
    const scope: CursorScope = { table: 'sales' };
    let after = cursor;
    const wanted = args.status && args.status.length > 0 ? new Set(args.status) : null;
    const out: SaleRow[] = [];
    // Status is live (clock and stock), so filtering happens after reading; scan in batches.
    // The cursor is the last sale's id, its (starts_at, id) read by PostgreSQL (microseconds and all).
    // A sale rescheduled (only while SCHEDULED) between two pages moves, and the next page follows it.
    for (;;) {
      let q = db.selectFrom('sales').selectAll().orderBy('starts_at', 'desc').orderBy('id', 'desc').limit(200);
      if (after) q = q.where(afterRow(scope, ['starts_at', 'id'], after, true));
      const rows = await q.execute();
      if (cursor && after === cursor && rows.length === 0) await requireCursorRow(db, scope, cursor); // first batch
      for (const row of rows) {
        if (!wanted || wanted.has(await this.statusOf(row))) out.push(row);
        if (out.length > size) break;
      }
      if (out.length > size || rows.length < 200) break;
      after = rows[rows.length - 1].id;
    }
    return toPage(out, size, 'sale', (r) => r.id);
  }
}
