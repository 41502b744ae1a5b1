import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Db } from '../db/database.js';
import type { StockEventRow } from '../db/types.js';
import type { RedisClient } from '../redis.js';
import { decodeCursor, pageSize, toPage, type Page } from './pagination.js';
import type { StockEngine } from './stock/engine.js';

const BATCH = 1000;

/**
 * Copies each sale's outbox stream (appended by the same Lua script that changed the stock) into
 * PostgreSQL: stock events, and the durable copy of each touched reservation. Inserts are
 * idempotent on the stream entry id, so several drainers at once, or a drainer that dies after
 * inserting and before trimming, never lose or double an event.
 */
export class LedgerDrainer {
  constructor(
    private readonly db: Db,
    private readonly redis: RedisClient,
    private readonly engine: StockEngine,
    private readonly log: Logger,
  ) {}

  /** Drains every live sale once; returns how many events were written. */
  async drainAll(): Promise<number> {
    let total = 0;
    for (const saleId of await this.engine.liveSaleIds()) total += await this.drainSale(saleId);
    return total;
  }

  async drainSale(saleId: string): Promise<number> {
    const key = this.engine.keys.outbox(saleId);
    let written = 0;
    for (;;) {
      const entries = (await this.redis.xrange(key, '-', '+', 'COUNT', BATCH)) as [string, string[]][];
      if (entries.length === 0) return written;
      const rows = entries.map(([streamId, flat]) => {
        const f: Record<string, string> = {};
        for (let i = 0; i < flat.length; i += 2) f[flat[i]] = flat[i + 1];
        return {
          sale_id: saleId, sale_item_id: f.i, stream_id: streamId, kind: f.k as StockEventRow['kind'], delta: Number(f.d),
          available_after: Number(f.a), customer_id: f.c || null, reservation_id: f.r || null, reason: f.w || null, at: new Date(Number(f.t)),
        };
      });
      await this.db.transaction().execute(async (tx) => {
        await tx.insertInto('stock_events').values(rows).onConflict((oc) => oc.columns(['sale_id', 'stream_id', 'sale_item_id']).doNothing()).execute();
        await this.copyReservations(tx, saleId, [...new Set(rows.map((r) => r.reservation_id).filter((x): x is string => !!x))]);
      });
      await this.redis.xdel(key, ...entries.map(([id]) => id));
      written += entries.length;
      if (entries.length < BATCH) return written;
    }
  }

  private async copyReservations(tx: Db, saleId: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    const live = await Promise.all(ids.map((id) => this.engine.reservation(saleId, id)));
    const rows = live
      .filter((r) => r !== null)
      .map((r) => ({
        id: r.id, sale_id: saleId, sale_item_id: r.saleItemId, customer_id: r.customerId, quantity: r.quantity,
        status: r.status === 'CONFIRMING' ? ('HELD' as const) : r.status, end_reason: r.endReason, idempotency_key: r.idempotencyKey,
        from_waitlist: r.fromWaitlist, created_at: new Date(r.createdAt), expires_at: new Date(r.expiresAt),
        ended_at: r.status === 'EXPIRED' || r.status === 'RELEASED' ? new Date() : null,
      }));
    if (rows.length === 0) return;
    await tx
      .insertInto('reservations')
      .values(rows)
      .onConflict((oc) =>
        oc.column('id').doUpdateSet({
          status: sql`excluded.status`, end_reason: sql`excluded.end_reason`, ended_at: sql`coalesce(reservations.ended_at, excluded.ended_at)`,
        }),
      )
      .execute();
  }

  async events(saleItemId: string, args: { first?: number | null; after?: string | null }): Promise<Page<StockEventRow>> {
    const size = pageSize(args.first, 100);
    const after = decodeCursor(args.after);
    let q = this.db.selectFrom('stock_events').selectAll().where('sale_item_id', '=', saleItemId).orderBy('id').limit(size + 1);
    if (after) q = q.where('id', '>', String(after[1]));
    return toPage(await q.execute(), size, (r) => [0, String(r.id)]);
  }

  /** Sum of an item's ledger: equals its live `available` once the drain has caught up. */
  async sumOf(saleItemId: string): Promise<number> {
    const r = await this.db.selectFrom('stock_events').select((eb) => eb.fn.sum<number>('delta').as('s')).where('sale_item_id', '=', saleItemId).executeTakeFirst();
    return Number(r?.s ?? 0);
  }
}
