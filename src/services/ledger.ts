import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import type { StockEventRow } from '../db/types.js';
import { afterRow, decodeCursor, pageSize, requireCursorRow, toPage, type CursorScope, type Page } from './pagination.js';
import type { LiveReservation, OutboxEntry, StockEngine } from './stock/engine.js';

const BATCH = 1000;

/**
 * One statement copies a batch: its stock events (idempotent on the stream entry id) and the
 * current state of the holds they name. Autocommitted, so both parts land or neither; `unnest`
 * keeps it to a few array parameters however large the batch.
 */
function copyBatch(saleId: string, entries: readonly OutboxEntry[], holds: readonly LiveReservation[]) {
  const ev = <T>(f: (e: OutboxEntry) => T) => entries.map(f);
  const hold = <T>(f: (h: LiveReservation) => T) => holds.map(f);
  return sql`
    with events as (
      insert into stock_events (sale_id, sale_item_id, stream_id, kind, delta, available_after, customer_id, reservation_id, reason, at)
      select ${saleId}, e.item, e.stream_id, e.kind, e.delta, e.after, e.cust, e.res, e.reason,
        timestamptz 'epoch' + e.at * interval '1 millisecond'
      from unnest(${ev((e) => e.saleItemId)}::text[], ${ev((e) => e.streamId)}::text[], ${ev((e) => e.kind)}::text[],
        ${ev((e) => e.delta)}::int4[], ${ev((e) => e.availableAfter)}::int4[], ${ev((e) => e.customerId)}::text[],
        ${ev((e) => e.reservationId)}::text[], ${ev((e) => e.reason)}::text[], ${ev((e) => e.at)}::int8[])
        with ordinality as e(item, stream_id, kind, delta, after, cust, res, reason, at, ord)
      order by e.ord
      on conflict (sale_id, stream_id, sale_item_id) do nothing
    )
    insert into reservations (id, sale_id, sale_item_id, customer_id, quantity, status, end_reason, idempotency_key,
      from_waitlist, created_at, expires_at, ended_at)
    select h.id, ${saleId}, h.item, h.cust, h.qty, h.status, h.end_reason, h.idem, h.wl,
      timestamptz 'epoch' + h.created * interval '1 millisecond', timestamptz 'epoch' + h.expires * interval '1 millisecond',
      case when h.status in ('EXPIRED', 'RELEASED') then now() end
    from unnest(${hold((h) => h.id)}::text[], ${hold((h) => h.saleItemId)}::text[], ${hold((h) => h.customerId)}::text[],
      ${hold((h) => h.quantity)}::int4[], ${hold((h) => (h.status === 'CONFIRMING' ? 'HELD' : h.status))}::text[],
      ${hold((h) => h.endReason)}::text[], ${hold((h) => h.idempotencyKey)}::text[], ${hold((h) => h.fromWaitlist)}::bool[],
      ${hold((h) => h.createdAt)}::int8[], ${hold((h) => h.expiresAt)}::int8[])
      as h(id, item, cust, qty, status, end_reason, idem, wl, created, expires)
    -- Rows locked in id order, so two drainers of the same batch never deadlock.
    order by h.id
    on conflict (id) do update set
      status = excluded.status, end_reason = excluded.end_reason, ended_at = coalesce(reservations.ended_at, excluded.ended_at)`;
}

/**
 * Copies each sale's outbox stream (appended by the same Lua script that changed the stock) into
 * PostgreSQL: stock events, and the durable copy of each touched reservation. Inserts are
 * idempotent on the stream entry id, so several drainers at once, or a drainer that dies after
 * inserting and before trimming, never lose or double an event.
 */
export class LedgerDrainer {
  constructor(
    private readonly db: Db,
    private readonly engine: StockEngine,
  ) {}

  /** Drains every live sale once; returns how many events were written. */
  async drainAll(): Promise<number> {
    let total = 0;
    for (const saleId of await this.engine.liveSaleIds()) total += await this.drainSale(saleId);
    return total;
  }

  async drainSale(saleId: string): Promise<number> {
    let written = 0;
    for (;;) {
      const { entries, holds } = await this.engine.readOutbox(saleId, BATCH);
      if (entries.length === 0) return written;
      // A rebuild's marker is no stock event: the rebuild writes its correction under the marker's id.
      const events = entries.filter((e) => e.kind !== 'REBUILT');
      if (events.length > 0) await copyBatch(saleId, events, holds).execute(this.db);
      const version = Math.max(...entries.map((e) => e.version));
      if (version > 0) {
        await this.db.insertInto('live_versions').values({ sale_id: saleId, drained_version: version })
          .onConflict((oc) => oc.column('sale_id').doUpdateSet({ drained_version: sql`greatest(live_versions.drained_version, excluded.drained_version)` }))
          .execute();
      }
      await this.engine.trimOutbox(saleId, entries.map((e) => e.streamId));
      written += entries.length;
      if (entries.length < BATCH) return written;
    }
  }

  async events(saleItemId: string, args: { first?: number | null; after?: string | null }): Promise<Page<StockEventRow>> {
    const size = pageSize(args.first, 100);
    const after = decodeCursor('stockEvent', args.after);
    const scope: CursorScope = { table: 'stock_events', where: { sale_item_id: saleItemId } };
    let q = this.db.selectFrom('stock_events').selectAll().where('sale_item_id', '=', saleItemId).orderBy('id').limit(size + 1);
    if (after) q = q.where(afterRow(scope, ['id'], after));
    const rows = await q.execute();
    if (after && rows.length === 0) await requireCursorRow(this.db, scope, after);
    return toPage(rows, size, 'stockEvent', (r) => String(r.id));
  }

  /** Sum of an item's ledger: equals its live `available` once the drain has caught up. */
  async sumOf(saleItemId: string): Promise<number> {
    const r = await this.db.selectFrom('stock_events').select((eb) => eb.fn.sum<number>('delta').as('s')).where('sale_item_id', '=', saleItemId).executeTakeFirst();
    return Number(r?.s ?? 0);
  }
}
