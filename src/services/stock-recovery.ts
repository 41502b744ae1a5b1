import { sql } from 'kysely';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import type { Db } from '../db/database.js';
import type { SaleRow } from '../db/types.js';
import type { RedisClient } from '../redis.js';
import type { SaleEvents } from './sale-events.js';
import type { StockEngine } from './stock/engine.js';

export type RebuildOutcome = 'live' | 'rebuilt' | 'initialised' | 'busy' | 'waiting';

export interface DriftReport {
  saleId: string;
  saleItemId: string;
  /** Units sold according to Redis minus CONFIRMED units in PostgreSQL. */
  drift: number;
}

/**
 * Brings sales back after Redis lost their keys, and checks Redis against PostgreSQL.
 *
 * A rebuild cannot trust PostgreSQL at once: a purchase reserved before the loss may still be
 * committing its order. Such a commit only succeeds before its hold's confirmation deadline
 * (checked by PostgreSQL's clock), and every such deadline is at most one confirmation window
 * after the loss. So the rebuild waits one window after it noticed the loss, then counts
 * CONFIRMED orders: nothing can be sold twice. Meanwhile buying answers TEMPORARILY_UNAVAILABLE.
 * Only one instance rebuilds a sale (a Redis lock); the script refuses to overwrite a live sale.
 */
export class StockRecovery {
  /** When this instance first saw each sale missing: the wait is counted from there. */
  private readonly missingSince = new Map<string, number>();
  private readonly driftGauge: Gauge<'sale_id' | 'sale_item_id'>;

  constructor(
    private readonly db: Db,
    private readonly redis: RedisClient,
    private readonly engine: StockEngine,
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
  }

  /** Seconds a caller should wait before buying from this sale again. */
  retryAfterSeconds(saleId: string): number {
    const since = this.missingSince.get(saleId);
    if (since === undefined) return 1;
    return Math.max(1, Math.ceil((since + this.engine.confirmWindowMs + 500 - Date.now()) / 1000));
  }

  /** Every sale that may still sell or has not been retired yet, made live again where Redis lost it. */
  async checkAll(): Promise<void> {
    const sales = await this.db
      .selectFrom('sales')
      .selectAll()
      .where('state', '!=', 'CANCELLED')
      .where('ends_at', '>', sql<Date>`now() - make_interval(secs => ${this.retireAfterMs / 1000})`)
      .execute();
    for (const sale of sales) await this.ensureLive(sale);
  }

  async ensureLive(sale: SaleRow): Promise<RebuildOutcome> {
    if (await this.engine.isLive(sale.id)) {
      this.missingSince.delete(sale.id);
      await this.redis.sadd(this.engine.keys.liveSales(), sale.id);
      return 'live';
    }
    const now = Date.now();
    const since = this.missingSince.get(sale.id) ?? now;
    this.missingSince.set(sale.id, since);
    // Before the start no hold can exist, so nothing can be committing: no need to wait.
    const mayHaveHolds = sale.starts_at.getTime() <= now;
    if (mayHaveHolds && now < since + this.engine.confirmWindowMs + 500) return 'waiting';

    const lock = this.engine.keys.lock(`rebuild:${sale.id}`);
    const got = await this.redis.set(lock, String(process.pid), 'PX', 30_000, 'NX');
    if (!got) return 'busy';
    try {
      const outcome = await this.rebuild(sale);
      this.missingSince.delete(sale.id);
      return outcome;
    } finally {
      await this.redis.del(lock);
    }
  }

  private async rebuild(sale: SaleRow): Promise<RebuildOutcome> {
    const [items, adjustments, orders] = await Promise.all([
      this.db.selectFrom('sale_items').select(['id', 'initial_stock']).where('sale_id', '=', sale.id).orderBy('position').execute(),
      this.db.selectFrom('stock_adjustments').select(['sale_item_id', sql<number>`sum(delta)`.as('delta')]).where('sale_id', '=', sale.id).groupBy('sale_item_id').execute(),
      this.db.selectFrom('orders').select(['id', 'reservation_id', 'sale_item_id', 'customer_id', 'quantity', 'idempotency_key', 'status']).where('sale_id', '=', sale.id).execute(),
    ]);
    const adj = new Map(adjustments.map((a) => [a.sale_item_id, Number(a.delta)]));
    const sold = new Map<string, number>();
    for (const o of orders) if (o.status === 'CONFIRMED') sold.set(o.sale_item_id, (sold.get(o.sale_item_id) ?? 0) + o.quantity);
    const state = {
      meta: { start: sale.starts_at.getTime(), end: sale.ends_at.getTime(), limit: sale.per_user_limit, hold: sale.hold_seconds, state: sale.state, wr: (sale.waiting_room ? 1 : 0) as 0 | 1 },
      items: items.map((i) => ({ id: i.id, init: i.initial_stock, adj: adj.get(i.id) ?? 0, sold: sold.get(i.id) ?? 0 })),
      orders: orders.map((o) => ({ res: o.reservation_id, item: o.sale_item_id, cust: o.customer_id, qty: o.quantity, order: o.id, key: o.idempotency_key, cancelled: o.status === 'CANCELLED' })),
    };
    const fresh = orders.length === 0 && adjustments.length === 0;
    if (!(await this.engine.rebuildSale(sale.id, state))) return 'live';

    await this.db
      .updateTable('reservations')
      .set({ status: 'RELEASED', end_reason: 'STOCK_REBUILT', ended_at: new Date() })
      .where('sale_id', '=', sale.id)
      .where('status', '=', 'HELD')
      .execute();
    await this.correctLedger(sale.id, state.items);
    this.log.warn({ saleId: sale.id, orders: orders.length, items: items.length }, fresh ? 'sale initialised in Redis' : 'live stock rebuilt from PostgreSQL after Redis lost it');
    await this.events.stockChanged(sale.id);
    await this.events.saleChanged(sale.id);
    return fresh ? 'initialised' : 'rebuilt';
  }

  /**
   * Events still in the lost outbox never reached the ledger; one ADJUSTED event per item makes the
   * ledger sum to the rebuilt `available` again, and says why.
   */
  private async correctLedger(saleId: string, items: { id: string; init: number; adj: number; sold: number }[]): Promise<void> {
    const sums = await this.db.selectFrom('stock_events').select(['sale_item_id', sql<number>`sum(delta)`.as('sum')]).where('sale_id', '=', saleId).groupBy('sale_item_id').execute();
    const sumOf = new Map(sums.map((s) => [s.sale_item_id, Number(s.sum)]));
    const at = new Date();
    const rows = items
      .map((i) => ({ item: i, available: i.init + i.adj - i.sold, sum: sumOf.get(i.id) ?? 0 }))
      .filter((r) => r.available !== r.sum)
      .map((r) => ({
        sale_id: saleId, sale_item_id: r.item.id, stream_id: `rebuild-${at.getTime()}`, kind: (r.sum === 0 && !sumOf.has(r.item.id) ? 'INITIAL' : 'ADJUSTED') as 'INITIAL' | 'ADJUSTED',
        delta: r.available - r.sum, available_after: r.available, customer_id: null, reservation_id: null,
        reason: 'live stock rebuilt from PostgreSQL after Redis lost it', at,
      }));
    if (rows.length > 0) await this.db.insertInto('stock_events').values(rows).onConflict((oc) => oc.doNothing()).execute();
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
