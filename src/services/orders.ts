import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import { DbRouter, type ReadVia } from '../db/read-routing.js';
import type { OrderRow } from '../db/types.js';
import type { Viewer } from './auth.js';
import { afterRow, decodeCursor, pageSize, requireCursorRow, toPage, type CursorScope, type Page } from './pagination.js';

export interface NewOrderRow {
  id: string;
  saleId: string;
  saleItemId: string;
  reservationId: string;
  customerId: string;
  quantity: number;
  unitPriceCents: number;
  idempotencyKey: string | null;
  deliveryEnc: string | null;
  /** The order must be committed before this instant (PostgreSQL's clock) or not at all. */
  deadline: Date;
  /** The live-state epoch its hold was made in: PostgreSQL refuses it once the sale was rebuilt since. */
  liveEpoch: number;
  /** The sale's live version right after its hold was taken (see StockRecovery). */
  liveVersion: number;
}

/**
 * Why PostgreSQL itself refused an order that Redis had allowed (migration 0004's triggers): the item's
 * stock or the customer's limit would be exceeded, the sale is cancelled, or the hold belongs to a
 * live state the sale has been rebuilt away from.
 */
export type Refusal = 'OVER_STOCK' | 'OVER_LIMIT' | 'SALE_CANCELLED' | 'STALE_EPOCH';

const REFUSALS: Record<string, Refusal> = {
  sale_items_sold_within_stock: 'OVER_STOCK',
  customer_units_within_limit: 'OVER_LIMIT',
  orders_sale_not_cancelled: 'SALE_CANCELLED',
  orders_live_epoch_current: 'STALE_EPOCH',
};

function refusalOf(err: unknown): Refusal | null {
  const e = err as { code?: unknown; constraint?: unknown };
  return e?.code === '23514' && typeof e.constraint === 'string' ? (REFUSALS[e.constraint] ?? null) : null;
}

export type InsertOutcome =
  | { ok: true; order: OrderRow }
  | { ok: false; reason: 'DEADLINE_PASSED' }
  | { ok: false; reason: 'KEY_TAKEN'; existing: OrderRow }
  | { ok: false; reason: 'REFUSED'; refusal: Refusal };

export interface GroupCommitOptions {
  /** Rows per statement at most; more waiting rows go into further statements. */
  maxBatch?: number;
  /** Where history reads with a `via` go (see DbRouter); inserts and the buying path's reads use `db`. */
  reads?: DbRouter;
}

/** Counters of the group commit, for tests and diagnostics. */
export interface GroupCommitStats {
  statements: number;
  rows: number;
  largestBatch: number;
}

interface PendingInsert {
  row: NewOrderRow;
  resolve: (outcome: InsertOutcome) => void;
  reject: (err: unknown) => void;
}

/** What the batch statement answers per input row, in input order: `in_time` and the inserted row, if any. */
type BatchResultRow = OrderRow & { ord: number; in_time: boolean };

/**
 * One statement writes a whole batch: each row is inserted only if PostgreSQL's clock is before its
 * own deadline (checked per row, `clock_timestamp()`), and a row whose (customer, key) is already
 * taken — by an earlier row of the same batch too — is skipped, not an error. The statement is
 * autocommitted, so a row it returns is committed when the answer arrives, and a failed statement
 * wrote nothing. Rows go in by (customer, key), then arrival: two batches waiting on each other's
 * uncommitted keys always wait in the same order (no deadlock), and within a batch the first
 * arrival of a key wins, as separate statements in arrival order would.
 */
function batchInsert(rows: readonly NewOrderRow[]) {
  const col = <T>(f: (r: NewOrderRow) => T) => rows.map(f);
  return sql<BatchResultRow>`
    with input as materialized (
      select t.*, clock_timestamp() < t.deadline as in_time
      from unnest(${col((r) => r.id)}::text[], ${col((r) => r.saleId)}::text[], ${col((r) => r.saleItemId)}::text[],
        ${col((r) => r.reservationId)}::text[], ${col((r) => r.customerId)}::text[], ${col((r) => r.quantity)}::int4[],
        ${col((r) => r.unitPriceCents)}::int4[], ${col((r) => r.idempotencyKey)}::text[], ${col((r) => r.deliveryEnc)}::text[],
        ${col((r) => r.deadline.toISOString())}::timestamptz[], ${col((r) => r.liveEpoch)}::int4[], ${col((r) => r.liveVersion)}::int8[])
        with ordinality as t(id, sale_id, sale_item_id, reservation_id, customer_id, quantity, unit_price_cents, idempotency_key, delivery_enc, deadline, live_epoch, live_version, ord)
    ), inserted as (
      insert into orders (id, sale_id, sale_item_id, reservation_id, customer_id, quantity, unit_price_cents,
        total_cents, status, payment_method, idempotency_key, delivery_enc, live_epoch, live_version)
      select id, sale_id, sale_item_id, reservation_id, customer_id, quantity, unit_price_cents,
        quantity::int8 * unit_price_cents, 'CONFIRMED', 'CASH_ON_DELIVERY', idempotency_key, delivery_enc, live_epoch, live_version
      from input where in_time order by customer_id, idempotency_key, ord
      on conflict (customer_id, idempotency_key) where idempotency_key is not null do nothing
      returning *
    )
    select input.ord, input.in_time, inserted.* from input left join inserted on inserted.id = input.id order by input.ord`;
}

/** An error PostgreSQL raised for the data of some row (class 22 data exception, 23 integrity constraint). */
function isRowDataError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code);
}

const DEFAULT_MAX_BATCH = 500;

/** Orders in PostgreSQL: the durable truth of what was sold. */
export class OrderStore {
  readonly groupCommit: GroupCommitStats = { statements: 0, rows: 0, largestBatch: 0 };
  private readonly maxBatch: number;
  private queue: PendingInsert[] = [];
  private flushScheduled = false;
  private readonly reads: DbRouter;

  constructor(private readonly db: Db, opts: GroupCommitOptions = {}) {
    this.maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
    this.reads = opts.reads ?? DbRouter.primaryOnly(db);
  }

  /**
   * Inserts an order unless its hold's confirmation deadline has passed. Past the deadline the
   * service may already have released the hold, so committing then could sell a unit twice.
   *
   * Orders arriving in the same event-loop turn are written by one statement (group commit). Each
   * caller still gets its own outcome, and only once its row is committed. When the statement
   * fails, every caller of the batch gets the error (nothing of the batch was written), except
   * after an error caused by some row's data: then each row is written alone, so only that row's
   * caller fails, as before group commit.
   */
  insert(o: NewOrderRow): Promise<InsertOutcome> {
    return new Promise<InsertOutcome>((resolve, reject) => {
      this.queue.push({ row: o, resolve, reject });
      if (this.flushScheduled) return;
      this.flushScheduled = true;
      // After this turn's I/O callbacks, so every purchase whose reserve answer arrived in the same
      // turn joins. Batches are not held back while others are in flight: under load the turns
      // grow and so do the batches, and a hung statement never blocks later orders.
      setImmediate(this.flush);
    });
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    const waiting = this.queue;
    this.queue = [];
    for (let i = 0; i < waiting.length; i += this.maxBatch) void this.write(waiting.slice(i, i + this.maxBatch));
  };

  /** Writes one batch and settles every caller of it; never rejects. */
  private async write(batch: PendingInsert[]): Promise<void> {
    this.groupCommit.statements++;
    this.groupCommit.rows += batch.length;
    if (batch.length > this.groupCommit.largestBatch) this.groupCommit.largestBatch = batch.length;
    let result: BatchResultRow[];
    try {
      result = (await batchInsert(batch.map((p) => p.row)).execute(this.db)).rows;
    } catch (err) {
      const refusal = refusalOf(err);
      if (batch.length > 1 && isRowDataError(err)) {
        await Promise.all(batch.map((p) => this.write([p])));
      } else if (refusal) {
        for (const p of batch) p.resolve({ ok: false, reason: 'REFUSED', refusal });
      } else {
        for (const p of batch) p.reject(err);
      }
      return;
    }
    if (result.length !== batch.length) {
      const err = new Error(`order batch of ${batch.length} rows answered ${result.length}`);
      for (const p of batch) p.reject(err);
      return;
    }
    // Read-your-writes: the buyers' next reads go to the primary (on every instance) before they learn of their order.
    const buyers = new Set<string>();
    for (const r of result) if (r.in_time && r.id !== null) buyers.add(r.customer_id);
    if (buyers.size > 0) await Promise.all([...buyers].map((id) => this.reads.wrote(id)));
    const conflicts: PendingInsert[] = [];
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i];
      const { ord, in_time, ...order } = result[i];
      if (ord !== i + 1) {
        p.reject(new Error(`order batch answered row ${ord} in place ${i + 1}`));
      } else if (!in_time) {
        p.resolve({ ok: false, reason: 'DEADLINE_PASSED' });
      } else if (order.id !== null) {
        p.resolve({ ok: true, order: order as OrderRow });
      } else {
        conflicts.push(p);
      }
    }
    if (conflicts.length > 0) await this.settleConflicts(conflicts);
  }

  /** Rows skipped for a taken (customer, key): answered with the order that holds the key. */
  private async settleConflicts(conflicts: PendingInsert[]): Promise<void> {
    let existing: OrderRow[];
    try {
      existing = await this.db.selectFrom('orders').selectAll()
        .where(sql<boolean>`(customer_id, idempotency_key) in (select * from unnest(${conflicts.map((p) => p.row.customerId)}::text[], ${conflicts.map((p) => p.row.idempotencyKey)}::text[]))`)
        .execute();
    } catch (err) {
      for (const p of conflicts) p.reject(err);
      return;
    }
    const byKey = new Map(existing.map((o) => [`${o.customer_id}\u0000${o.idempotency_key}`, o]));
    for (const p of conflicts) {
      const found = p.row.idempotencyKey === null ? undefined : byKey.get(`${p.row.customerId}\u0000${p.row.idempotencyKey}`);
      if (found) p.resolve({ ok: false, reason: 'KEY_TAKEN', existing: found });
      // Not inserted and no order holds the key: cannot happen while orders are never deleted.
      else p.reject(Object.assign(new Error('order skipped for a taken idempotency key, but no order holds it'), { code: '23505', constraint: 'orders_customer_idempotency' }));
    }
  }

  /** An item's stock (initial + adjustments) and CONFIRMED units, as PostgreSQL counts them. */
  async itemCount(saleItemId: string): Promise<{ stock: number; sold: number } | undefined> {
    return this.db.selectFrom('sale_items').select(['stock', 'sold']).where('id', '=', saleItemId).executeTakeFirst();
  }

  async byCustomerKey(customerId: string, key: string): Promise<OrderRow | undefined> {
    return this.db.selectFrom('orders').selectAll().where('customer_id', '=', customerId).where('idempotency_key', '=', key).executeTakeFirst();
  }

  async byIds(ids: readonly string[], via?: ReadVia): Promise<(OrderRow | null)[]> {
    if (ids.length === 0) return [];
    const db = await this.reads.db(via);
    const rows = await db.selectFrom('orders').selectAll().where('id', 'in', [...ids]).execute();
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.map((id) => byId.get(id) ?? null);
  }

  async byReservationIds(ids: readonly string[]): Promise<OrderRow[]> {
    if (ids.length === 0) return [];
    return this.db.selectFrom('orders').selectAll().where('reservation_id', 'in', [...ids]).execute();
  }

  /** Marks a CONFIRMED order CANCELLED; undefined when it was not CONFIRMED. */
  async cancel(orderId: string): Promise<OrderRow | undefined> {
    const row = await this.db
      .updateTable('orders')
      .set({ status: 'CANCELLED', cancelled_at: new Date() })
      .where('id', '=', orderId)
      .where('status', '=', 'CONFIRMED')
      .returningAll()
      .executeTakeFirst();
    if (row) await this.reads.wrote(row.customer_id);
    return row;
  }

  /** An order the viewer may see: their own, or any for admins. */
  async visible(viewer: Viewer | null, orderId: string, via?: ReadVia): Promise<OrderRow | null> {
    if (!viewer) return null;
    const [order] = await this.byIds([orderId], via);
    if (!order) return null;
    return viewer.role === 'admin' || order.customer_id === viewer.id ? order : null;
  }

  /** The customer's orders, newest first. */
  async ofCustomer(customerId: string, args: { saleId?: string | null; first?: number | null; after?: string | null }, via?: ReadVia): Promise<Page<OrderRow>> {
    const db = await this.reads.db(via);
    const size = pageSize(args.first);
    const after = decodeCursor('order', args.after);
    // The cursor must be one of the customer's own orders; its (created_at, id) is read by PostgreSQL.
    const scope: CursorScope = { table: 'orders', where: { customer_id: customerId } };
    let q = db.selectFrom('orders').selectAll().where('customer_id', '=', customerId).orderBy('created_at', 'desc').orderBy('id', 'desc').limit(size + 1);
    if (args.saleId) q = q.where('sale_id', '=', args.saleId);
    if (after) q = q.where(afterRow(scope, ['created_at', 'id'], after, true));
    const rows = await q.execute();
    if (after && rows.length === 0) await requireCursorRow(db, scope, after);
    return toPage(rows, size, 'order', (r) => r.id);
  }

  /** A sale's orders for fulfilment, oldest first. */
  async ofSale(saleId: string, args: { status?: OrderRow['status'] | null; first?: number | null; after?: string | null }, via?: ReadVia): Promise<Page<OrderRow>> {
    const db = await this.reads.db(via);
    const size = pageSize(args.first);
    const after = decodeCursor('order', args.after);
    // The cursor must be an order of this sale (of any status: one may be cancelled between pages).
    const scope: CursorScope = { table: 'orders', where: { sale_id: saleId } };
    let q = db.selectFrom('orders').selectAll().where('sale_id', '=', saleId).orderBy('created_at').orderBy('id').limit(size + 1);
    if (args.status) q = q.where('status', '=', args.status);
    if (after) q = q.where(afterRow(scope, ['created_at', 'id'], after));
    const rows = await q.execute();
    if (after && rows.length === 0) await requireCursorRow(db, scope, after);
    return toPage(rows, size, 'order', (r) => r.id);
  }
}
