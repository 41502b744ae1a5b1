import { sql } from 'kysely';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Db } from '../db/database.js';
import type { SaleRow } from '../db/types.js';
import type { RedisClient } from '../redis.js';
import type { LedgerDrainer } from './ledger.js';
import type { SaleEvents } from './sale-events.js';
import { newId } from './ids.js';
import type { LiveCheck, RebuildState, StockEngine } from './stock/engine.js';

/** Sales checked at once by a pass of `checkAll`. */
const CHECK_CONCURRENCY = 8;

export type RebuildOutcome = 'live' | 'rebuilt' | 'initialised' | 'busy' | 'suspect';

export interface DriftReport {
  saleId: string;
  saleItemId: string;
  /** Units sold according to Redis minus CONFIRMED units in PostgreSQL. */
  drift: number;
}

/** Why a sale's live state is not trusted; `confirm` ones may be a change in flight and must show twice. */
interface Diagnosis {
  reason: string;
  confirm: boolean;
}

type ItemCount = { id: string; initial_stock: number; stock: number; sold: number; max_live_version: string };

/**
 * Keeps each sale's live state in Redis honest against PostgreSQL, and replaces it when it is not.
 *
 * Every second each current sale's live state is compared with PostgreSQL's counts (`check`). A
 * state that is missing or partial, belongs to another epoch, went back in time (its version is
 * below one an order was sold at: a failover to a replica that missed writes, a restore) or breaks
 * its own invariant is repaired at once; a difference in sold or stock units that a change in flight
 * could explain (a cancel between its two steps) is repaired when the same difference shows twice.
 * A purchase that PostgreSQL refused (`requestRepair`) and a script that found the state partial
 * ask for a repair too.
 *
 * A repair is fenced: one instance at a time (a Redis lock); it first raises the sale's epoch in
 * PostgreSQL, which waits for order inserts in flight and makes PostgreSQL refuse every later order
 * whose hold was made in the old state, so the counts it then reads are final; then one script
 * replaces the whole live state. Meanwhile buying answers TEMPORARILY_UNAVAILABLE; nothing waits
 * for a confirmation window, so purchases resume as soon as the script ran.
 */
export class StockRecovery {
  /** The diagnosis of each sale's last check that asked for confirmation, by its text. */
  private readonly suspicion = new Map<string, string>();
  private readonly repairing = new Map<string, Promise<RebuildOutcome>>();
  private readonly driftGauge: Gauge<'sale_id' | 'sale_item_id'>;
  private readonly repairs: Counter<'reason'>;

  constructor(
    private readonly db: Db,
    private readonly redis: RedisClient,
    private readonly engine: StockEngine,
    private readonly ledger: LedgerDrainer,
    private readonly events: SaleEvents,
    registry: Registry,
    private readonly log: Logger,
    /** Sales that ended longer ago than this are retired (HoldSweeper), not brought back. */
    private readonly retireAfterMs: number,
  ) {
    this.driftGauge = new Gauge({
      name: 'flashsale_stock_drift_units',
      help: 'units sold per Redis minus CONFIRMED units in PostgreSQL, per sale item (0 when consistent)',
      labelNames: ['sale_id', 'sale_item_id'],
      registers: [registry],
    });
    this.repairs = new Counter({
      name: 'flashsale_live_state_repairs_total',
      help: 'sales whose live state in Redis was replaced from PostgreSQL, by what was wrong',
      labelNames: ['reason'],
      registers: [registry],
    });
  }

  /** Seconds a caller should wait before buying from a sale under repair again. */
  retryAfterSeconds(_saleId: string): number {
    return 1;
  }

  /** Every sale that may still sell or has not been retired yet, checked and repaired where needed. */
  async checkAll(): Promise<void> {
    // Cancelled sales too: a live state that went back to before the cancel would sell again.
    const sales = await this.db
      .selectFrom('sales')
      .selectAll()
      .where('ends_at', '>', sql<Date>`now() - make_interval(secs => ${this.retireAfterMs / 1000})`)
      .execute();
    // A few at a time, so a pass over many sales stays within a few intervals; one sale's failure
    // (a repair refused, a dependency hiccup) is logged and never keeps the others unchecked.
    let next = 0;
    const worker = async () => {
      while (next < sales.length) {
        const sale = sales[next++];
        await this.check(sale).catch((err: unknown) => this.log.warn({ err: String(err), saleId: sale.id }, 'live-state check failed; the next pass tries again'));
      }
    };
    await Promise.all(Array.from({ length: Math.min(CHECK_CONCURRENCY, sales.length) }, worker));
  }

  /** Compares one sale's live state with PostgreSQL and repairs it when it is not to be trusted. */
  async check(sale: SaleRow): Promise<RebuildOutcome> {
    // PostgreSQL first: an order committed after this read is not counted here, but its hold is
    // already in Redis (reserved before the commit), so it can never look like lost units.
    const [items, drained] = await Promise.all([this.itemCounts(sale.id), this.drainedVersion(sale.id)]);
    const live = await this.engine.liveCheck(sale.id);
    const diagnosis = diagnose(sale, items, drained, live);
    if (!diagnosis) {
      this.suspicion.delete(sale.id);
      await this.redis.sadd(this.engine.keys.liveSales(), sale.id);
      return 'live';
    }
    if (diagnosis.confirm && this.suspicion.get(sale.id) !== diagnosis.reason) {
      this.suspicion.set(sale.id, diagnosis.reason);
      return 'suspect';
    }
    this.suspicion.delete(sale.id);
    return this.repair(sale, diagnosis.reason);
  }

  /** Makes sure a sale has a whole live state (repairing it if not); used when a read found none. */
  async ensureLive(sale: SaleRow): Promise<RebuildOutcome> {
    if (await this.engine.isLive(sale.id)) {
      await this.redis.sadd(this.engine.keys.liveSales(), sale.id);
      return 'live';
    }
    return this.repair(sale, 'missing or incomplete');
  }

  /**
   * Asks for a repair without waiting for it: PostgreSQL refused an order Redis had allowed, or a
   * script found the live state partial. Failures are logged; the periodic check tries again.
   */
  requestRepair(saleId: string, reason: string, how: 'repair' | 'check' = 'repair'): void {
    if (this.repairing.has(saleId)) return;
    void (async () => {
      const sale = await this.db.selectFrom('sales').selectAll().where('id', '=', saleId).executeTakeFirst();
      if (sale) await (how === 'repair' ? this.repair(sale, reason) : this.check(sale));
    })().catch((err) => this.log.warn({ err: String(err), saleId }, 'requested live-state repair failed; the periodic check will retry'));
  }

  /** Replaces the sale's live state from PostgreSQL, once per instance at a time and fenced across instances. */
  repair(sale: SaleRow, reason: string): Promise<RebuildOutcome> {
    let running = this.repairing.get(sale.id);
    if (!running) {
      running = this.repairLocked(sale, reason).finally(() => this.repairing.delete(sale.id));
      this.repairing.set(sale.id, running);
    }
    return running;
  }

  private async repairLocked(sale: SaleRow, reason: string): Promise<RebuildOutcome> {
    const lock = this.engine.keys.lock(`rebuild:${sale.id}`);
    const token = newId();
    if (!(await this.redis.set(lock, token, 'PX', 30_000, 'NX'))) return 'busy';
    try {
      return await this.rebuild(sale.id, reason);
    } finally {
      if ((await this.redis.get(lock)) === token) await this.redis.del(lock);
    }
  }

  private async rebuild(saleId: string, reason: string): Promise<RebuildOutcome> {
    // The fence: waits for order inserts in flight (they hold a share lock on the sale row), and
    // from its commit on PostgreSQL refuses every order whose hold was made in the old state.
    // Bounded: a lock held by a transaction that never ends must fail this repair (the next check
    // tries again), not hang it and every check queued behind it.
    const sale = await this.db.transaction().execute(async (tx) => {
      await sql`set local lock_timeout = '3s'`.execute(tx);
      return tx.updateTable('sales').set((eb) => ({ live_epoch: eb('live_epoch', '+', 1) })).where('id', '=', saleId).returningAll().executeTakeFirstOrThrow();
    });
    const [items, drained, orders] = await Promise.all([
      this.itemCounts(saleId),
      this.drainedVersion(saleId),
      this.db.selectFrom('orders').select(['id', 'reservation_id', 'sale_item_id', 'customer_id', 'quantity', 'idempotency_key', 'status']).where('sale_id', '=', saleId).execute(),
    ]);
    const state: RebuildState = {
      epoch: sale.live_epoch,
      minVersion: Math.max(drained, ...items.map((i) => Number(i.max_live_version))),
      meta: { start: sale.starts_at.getTime(), end: sale.ends_at.getTime(), limit: sale.per_user_limit, hold: sale.hold_seconds, state: sale.state, wr: (sale.waiting_room ? 1 : 0) as 0 | 1 },
      items: items.map((i) => ({ id: i.id, init: i.initial_stock, adj: i.stock - i.initial_stock, sold: i.sold })),
      orders: orders.map((o) => ({ res: o.reservation_id, item: o.sale_item_id, cust: o.customer_id, qty: o.quantity, order: o.id, key: o.idempotency_key ?? '', cancelled: o.status === 'CANCELLED' })),
    };
    const { marker } = await this.engine.rebuildSale(saleId, state);
    this.repairs.inc({ reason: reason.split(':')[0] });

    await this.ledger.correctAtRebuild(saleId, marker, new Map(state.items.map((i) => [i.id, i.init + i.adj - i.sold])));
    const fresh = orders.length === 0 && items.every((i) => i.stock === i.initial_stock);
    this.log.warn({ saleId, reason, epoch: sale.live_epoch, orders: orders.length, items: items.length }, 'live state of a sale replaced from PostgreSQL');
    await this.events.stockChanged(saleId);
    await this.events.saleChanged(saleId);
    return fresh ? 'initialised' : 'rebuilt';
  }

  /** The highest live version the ledger has copied an event of (0 when none). */
  private async drainedVersion(saleId: string): Promise<number> {
    const row = await this.db.selectFrom('live_versions').select('drained_version').where('sale_id', '=', saleId).executeTakeFirst();
    return row ? Number(row.drained_version) : 0;
  }

  private itemCounts(saleId: string): Promise<ItemCount[]> {
    return this.db.selectFrom('sale_items').select(['id', 'initial_stock', 'stock', 'sold', 'max_live_version']).where('sale_id', '=', saleId).orderBy('position').execute();
  }

  /** Compares units sold in Redis with CONFIRMED units in PostgreSQL for every live sale. */
  async reconcile(): Promise<DriftReport[]> {
    const reports: DriftReport[] = [];
    for (const saleId of await this.engine.liveSaleIds()) {
      const snap = await this.engine.snapshot(saleId);
      if (!snap) continue;
      const rows = await this.db
        .selectFrom('orders')
        .select(['sale_item_id', sql<number>`sum(quantity)`.as('units')])
        .where('sale_id', '=', saleId)
        .where('status', '=', 'CONFIRMED')
        .groupBy('sale_item_id')
        .execute();
      const pg = new Map(rows.map((r) => [r.sale_item_id, Number(r.units)]));
      for (const [itemId, level] of snap.items) {
        const drift = level.sold - (pg.get(itemId) ?? 0);
        this.driftGauge.set({ sale_id: saleId, sale_item_id: itemId }, drift);
        reports.push({ saleId, saleItemId: itemId, drift });
        if (drift !== 0) this.log.warn({ saleId, saleItemId: itemId, drift, redisSold: level.sold, postgresSold: pg.get(itemId) ?? 0 }, 'stock drift between Redis and PostgreSQL');
      }
    }
    return reports;
  }
}

/** What, if anything, makes a sale's live state untrustworthy against PostgreSQL's counts. */
function diagnose(sale: SaleRow, items: ItemCount[], drained: number, live: LiveCheck): Diagnosis | null {
  if (!live.complete) return { reason: 'missing or incomplete', confirm: false };
  if (live.epoch !== sale.live_epoch) return { reason: `epoch: live ${live.epoch}, PostgreSQL ${sale.live_epoch}`, confirm: false };
  const sold = Math.max(0, ...items.map((i) => Number(i.max_live_version)));
  if (live.version < sold) return { reason: `went back in time: version ${live.version} below ${sold}, sold at`, confirm: false };
  if (live.version < drained) return { reason: `went back in time: version ${live.version} below ${drained}, in the ledger`, confirm: false };
  // An admin change writes PostgreSQL first and the live state next: a difference may be one in flight.
  const d = live.definition;
  if (d.state !== sale.state || d.start !== sale.starts_at.getTime() || d.end !== sale.ends_at.getTime() || d.limit !== sale.per_user_limit || d.hold !== sale.hold_seconds) {
    return { reason: `definition differs: live ${d.state} ${d.start}-${d.end} limit ${d.limit} hold ${d.hold}, PostgreSQL ${sale.state}`, confirm: true };
  }
  for (const item of items) {
    const l = live.items.get(item.id);
    if (!l) return { reason: `item missing: ${item.id}`, confirm: false };
    if (l.available < 0 || l.reserved < 0 || l.sold < 0 || l.available + l.reserved + l.sold !== l.initial + l.adjusted) {
      return { reason: `broken invariant: ${item.id} a=${l.available} r=${l.reserved} s=${l.sold}`, confirm: false };
    }
    // Read in the same script as the counts, so no change can be in flight between them.
    if (l.reserved !== l.held) return { reason: `reserved without holds: ${item.id} reserved ${l.reserved}, holds ${l.held}`, confirm: false };
    if (item.sold > l.sold + l.confirming) return { reason: `lost sold units: ${item.id} PostgreSQL ${item.sold}, live ${l.sold}+${l.confirming}`, confirm: true };
    if (item.sold < l.sold) return { reason: `phantom sold units: ${item.id} PostgreSQL ${item.sold}, live ${l.sold}`, confirm: true };
    if (l.initial + l.adjusted !== item.stock) return { reason: `stock differs: ${item.id} PostgreSQL ${item.stock}, live ${l.initial + l.adjusted}`, confirm: true };
  }
  return null;
}
