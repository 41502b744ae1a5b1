import { sql } from 'kysely';
import type { Transaction } from 'kysely';
import type { Db } from '../db/database.js';
import type { Database, StockEventRow } from '../db/types.js';
import { afterRow, decodeCursor, pageSize, requireCursorRow, toPage, type CursorScope, type Page } from './pagination.js';
import type { LiveReservation, OutboxEntry, StockEngine } from './stock/engine.js';

const BATCH = 1000;

/**
 * One statement copies a batch: its stock events (idempotent on the stream entry id) and the
 * current state of the holds they name. Autocommitted, so both parts land or neither; `unnest`
 * keeps it to a few array parameters however large the batch.
 */
function copyBatch(saleId: string, entries: readonly OutboxEntry[], holds: readonly LiveReservation[], forks: 'refuse' | 'skip') {
  const ev = <T>(f: (e: OutboxEntry) => T) => entries.map(f);
  const hold = <T>(f: (h: LiveReservation) => T) => holds.map(f);
  return sql`
    with events as (
      insert into stock_events (sale_id, sale_item_id, stream_id, kind, delta, available_after, customer_id, reservation_id, reason, at, prev_stream_id)
      select ${saleId}, e.item, e.stream_id, e.kind, e.delta, e.after, e.cust, e.res, e.reason,
        timestamptz 'epoch' + e.at * interval '1 millisecond', e.prev
      from unnest(${ev((e) => e.saleItemId)}::text[], ${ev((e) => e.streamId)}::text[], ${ev((e) => e.kind)}::text[],
        ${ev((e) => e.delta)}::int4[], ${ev((e) => e.availableAfter)}::int4[], ${ev((e) => e.customerId)}::text[],
        ${ev((e) => e.reservationId)}::text[], ${ev((e) => e.reason)}::text[], ${ev((e) => e.at)}::int8[], ${ev((e) => e.prev)}::text[])
        with ordinality as e(item, stream_id, kind, delta, after, cust, res, reason, at, prev, ord)
      order by e.ord
      -- Copied before: nothing to do. Following an event another copied event follows too (a fork,
      -- see migration 0007): 'refuse' raises the chain's unique violation, 'skip' leaves it out.
      on conflict ${forks === 'refuse' ? sql`(sale_id, stream_id, sale_item_id)` : sql``} do nothing
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
 * Takes the sale's ledger lock (its `live_versions` row) until the transaction ends, and returns the
 * outbox id of its last rebuild; `marker` records a newer rebuild first.
 */
async function lockLedger(tx: Transaction<Database>, saleId: string, marker?: string): Promise<string | null> {
  const row = await tx
    .insertInto('live_versions')
    .values({ sale_id: saleId, drained_version: 0, rebuilt_marker: marker ?? null })
    .onConflict((oc) =>
      oc.column('sale_id').doUpdateSet({
        rebuilt_marker: marker
          ? sql`case when live_versions.rebuilt_marker is null or stream_position(live_versions.rebuilt_marker) < stream_position(${marker}) then ${marker} else live_versions.rebuilt_marker end`
          : sql`live_versions.rebuilt_marker`,
      }),
    )
    .returning('rebuilt_marker')
    .executeTakeFirstOrThrow();
  return row.rebuilt_marker;
}

/** Whether outbox id `a` ("ms-seq") comes before `b`. */
function streamBefore(a: string, b: string): boolean {
  const [am, as] = a.split('-').map(Number);
  const [bm, bs] = b.split('-').map(Number);
  return am < bm || (am === bm && as < bs);
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
    /** Called when the outbox forked from the ledger's history (migration 0007): the live state needs a rebuild. */
    private readonly forked: (saleId: string) => void,
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
      const copied = await this.db.transaction().execute(async (tx) => {
        const marker = await lockLedger(tx, saleId);
        // Events before the sale's last rebuild were copied by it or belong to a replaced state.
        const current = marker ? entries.filter((e) => !streamBefore(e.streamId, marker)) : entries;
        // A rebuild's marker is no stock event: the rebuild writes its correction under the marker's id.
        const events = current.filter((e) => e.kind !== 'REBUILT');
        const named = new Set(events.map((e) => e.reservationId));
        if (events.length > 0) await copyBatch(saleId, events, holds.filter((h) => named.has(h.id)), 'refuse').execute(tx);
        const version = Math.max(0, ...current.map((e) => e.version));
        if (version > 0) await tx.updateTable('live_versions').set({ drained_version: sql`greatest(drained_version, ${version})` }).where('sale_id', '=', saleId).execute();
        return true;
      }).catch((err: unknown) => {
        if ((err as { constraint?: string }).constraint !== 'stock_events_chain') throw err;
        return false;
      });
      if (!copied) {
        // Left in the outbox: the rebuild copies what belongs to the state it replaces.
        this.forked(saleId);
        return written;
      }
      await this.engine.trimOutbox(saleId, entries.map((e) => e.streamId));
      written += entries.length;
      if (entries.length < BATCH) return written;
    }
  }

  /**
   * After a rebuild: makes the ledger sum to each item's rebuilt `available` at the rebuild's marker.
   * Under the sale's ledger lock it records the marker (from then on no drainer copies an event
   * before it), copies the events before it that the outbox still holds, ends the holds PostgreSQL
   * still shows HELD (the rebuild ended them all), and writes one event per item under the marker's
   * id for the difference between the rebuilt figure and the ledger's sum.
   */
  async correctAtRebuild(saleId: string, marker: string, available: ReadonlyMap<string, number>): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await lockLedger(tx, saleId, marker);
      for (let after: string | undefined; ; ) {
        const { entries, holds } = await this.engine.readOutbox(saleId, BATCH, { after, before: marker });
        const events = entries.filter((e) => e.kind !== 'REBUILT');
        if (events.length > 0) await copyBatch(saleId, events, holds, 'skip').execute(tx);
        if (entries.length < BATCH) break;
        after = entries[entries.length - 1].streamId;
      }
      await tx
        .updateTable('reservations')
        .set({ status: 'RELEASED', end_reason: 'STOCK_REBUILT', ended_at: new Date() })
        .where('sale_id', '=', saleId)
        .where('status', '=', 'HELD')
        .execute();
      const sums = await sql<{ item: string; sum: string }>`
        select sale_item_id as item, sum(delta) as sum from stock_events
        where sale_id = ${saleId} and (stream_id !~ '^[0-9]+-[0-9]+$' or stream_position(stream_id) < stream_position(${marker}))
        group by sale_item_id`.execute(tx);
      const sumOf = new Map(sums.rows.map((s) => [s.item, Number(s.sum)]));
      const at = new Date();
      const rows = [...available]
        .filter(([item, units]) => units !== (sumOf.get(item) ?? 0))
        .map(([item, units]) => ({
          sale_id: saleId, sale_item_id: item, stream_id: marker, kind: (sumOf.has(item) ? 'ADJUSTED' : 'INITIAL') as 'INITIAL' | 'ADJUSTED',
          delta: units - (sumOf.get(item) ?? 0), available_after: units, customer_id: null, reservation_id: null,
          reason: 'live stock rebuilt from PostgreSQL', at,
        }));
      if (rows.length > 0) await tx.insertInto('stock_events').values(rows).onConflict((oc) => oc.doNothing()).execute();
    });
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
