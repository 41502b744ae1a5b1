import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Db } from '../src/db/database.js';
import { newId } from '../src/services/ids.js';
import { OrderStore, type InsertOutcome, type NewOrderRow } from '../src/services/orders.js';
import { createSale } from './support/fixtures.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { PURCHASE } from './support/operations.js';

// Group commit of order inserts (OrderStore): orders of one event-loop turn share one statement,
// and each caller still gets the outcome a statement of its own would have given it.

let t: TestServer;
let db: Db;
let saleId: string;
let itemId: string;
let seq = 0;

beforeAll(async () => {
  t = await startTestServer('groupcommit', { RATE_LIMIT_ENABLED: 'false' });
  db = t.app.db;
  ({ saleId, itemIds: [itemId] } = await createSale(t, { stock: 100_000, perUserLimit: 1000 }));
}, 60_000);
afterAll(() => t?.close());

function row(over: Partial<NewOrderRow> = {}): NewOrderRow {
  const n = seq++;
  return {
    id: newId(), saleId, saleItemId: itemId, reservationId: `${saleId}.gc-res-${n}-${newId()}`, customerId: `gc-customer-${n}`,
    quantity: 1, unitPriceCents: 19_999, idempotencyKey: `gc-key-${n}`, deliveryEnc: null, deadline: new Date(Date.now() + 10_000), liveEpoch: 1, liveVersion: 0, ...over,
  };
}

/** Calls `insert` for every row in the same turn; each caller's outcome, or the error it got. */
async function insertAll(store: OrderStore, rows: NewOrderRow[]): Promise<({ outcome: InsertOutcome } | { error: unknown })[]> {
  return Promise.all(rows.map((r) => store.insert(r).then((outcome) => ({ outcome }), (error: unknown) => ({ error }))));
}

async function ordersOf(ids: string[]) {
  if (ids.length === 0) return [];
  return db.selectFrom('orders').selectAll().where('id', 'in', ids).execute();
}

describe('OrderStore group commit', () => {
  it('writes many concurrent inserts with a few statements, each caller getting its own committed order', async () => {
    const store = new OrderStore(db);
    const rows = Array.from({ length: 300 }, (_, i) => row({ quantity: 1 + (i % 3), deliveryEnc: i % 2 ? `sealed-${i}` : null }));
    const results = await insertAll(store, rows);

    // One turn's inserts go into one statement; at most a handful for 300 rows.
    expect(store.groupCommit.rows).toBe(300);
    expect(store.groupCommit.statements).toBeLessThanOrEqual(3);
    expect(store.groupCommit.largestBatch).toBeGreaterThanOrEqual(100);

    const committed = new Map((await ordersOf(rows.map((r) => r.id))).map((o) => [o.id, o]));
    rows.forEach((r, i) => {
      const res = results[i];
      expect(res, r.id).toHaveProperty('outcome');
      const outcome = (res as { outcome: InsertOutcome }).outcome;
      expect(outcome.ok, r.id).toBe(true);
      const order = (outcome as { order: { id: string } }).order;
      // The caller's own row, as PostgreSQL committed it (the answer came after the commit).
      expect(order).toEqual(committed.get(r.id));
      expect(order).toMatchObject({
        id: r.id, reservation_id: r.reservationId, customer_id: r.customerId, quantity: r.quantity,
        total_cents: r.quantity * r.unitPriceCents, status: 'CONFIRMED', idempotency_key: r.idempotencyKey, delivery_enc: r.deliveryEnc,
      });
    });
  });

  it('splits a turn larger than maxBatch into statements of maxBatch rows', async () => {
    const store = new OrderStore(db, { maxBatch: 40 });
    const rows = Array.from({ length: 100 }, () => row());
    const results = await insertAll(store, rows);
    expect(store.groupCommit).toEqual({ statements: 3, rows: 100, largestBatch: 40 });
    results.forEach((r, i) => expect((r as { outcome: { order?: { id: string } } }).outcome.order?.id).toBe(rows[i].id));
  });

  it('answers KEY_TAKEN with the order that holds the key: an existing row, and a duplicate inside the same batch', async () => {
    const store = new OrderStore(db);
    const earlier = row({ customerId: 'gc-dup-a', idempotencyKey: 'dup-key' });
    const first = await store.insert(earlier);
    expect(first.ok).toBe(true);

    const againstExisting = row({ customerId: 'gc-dup-a', idempotencyKey: 'dup-key' });
    const inBatchFirst = row({ customerId: 'gc-dup-b', idempotencyKey: 'same-turn' });
    const inBatchSecond = row({ customerId: 'gc-dup-b', idempotencyKey: 'same-turn' });
    const otherCustomerSameKey = row({ customerId: 'gc-dup-c', idempotencyKey: 'same-turn' });
    const bystanders = Array.from({ length: 5 }, () => row());
    const before = store.groupCommit.statements;
    const results = await insertAll(store, [againstExisting, inBatchFirst, ...bystanders, inBatchSecond, otherCustomerSameKey]);
    expect(store.groupCommit.statements - before).toBe(1);
    const [rExisting, rFirst, ...rest] = results.map((r) => (r as { outcome: InsertOutcome }).outcome);
    const rSecond = rest[5];
    const rOther = rest[6];

    expect(rExisting).toEqual({ ok: false, reason: 'KEY_TAKEN', existing: (first as { order: unknown }).order });
    expect(rFirst.ok).toBe(true);
    expect(rSecond).toEqual({ ok: false, reason: 'KEY_TAKEN', existing: (rFirst as { order: unknown }).order });
    expect(rOther.ok).toBe(true);
    for (const b of rest.slice(0, 5)) expect(b.ok).toBe(true);

    // One order per (customer, key), and none for the refused rows.
    expect(await ordersOf([againstExisting.id, inBatchSecond.id])).toEqual([]);
    const dup = await db.selectFrom('orders').select(['customer_id', sql<number>`count(*)`.as('n')])
      .where('idempotency_key', 'in', ['dup-key', 'same-turn']).groupBy('customer_id').orderBy('customer_id').execute();
    expect(dup.map((d) => [d.customer_id, Number(d.n)])).toEqual([['gc-dup-a', 1], ['gc-dup-b', 1], ['gc-dup-c', 1]]);
  });

  it('refuses a row whose deadline has passed by PostgreSQL’s clock while the others of its batch commit', async () => {
    const store = new OrderStore(db);
    const [{ now }] = (await sql<{ now: Date }>`select clock_timestamp() as now`.execute(db)).rows;
    const late = row({ deadline: new Date(now.getTime() - 1) });
    // Past by PostgreSQL's clock, but not by much: the check is per row, not per batch.
    const justLate = row({ deadline: new Date(now.getTime() - 1), idempotencyKey: null });
    const onTime = Array.from({ length: 6 }, () => row());
    // A late row holding a taken key is still refused for its deadline, as a statement of its own would be.
    const lateDuplicate = row({ customerId: onTime[0].customerId, idempotencyKey: onTime[0].idempotencyKey, deadline: new Date(now.getTime() - 1) });
    const before = store.groupCommit.statements;
    const results = (await insertAll(store, [onTime[0], late, ...onTime.slice(1, 3), justLate, ...onTime.slice(3), lateDuplicate]))
      .map((r) => (r as { outcome: InsertOutcome }).outcome);
    expect(store.groupCommit.statements - before).toBe(1);

    expect(results[1]).toEqual({ ok: false, reason: 'DEADLINE_PASSED' });
    expect(results[4]).toEqual({ ok: false, reason: 'DEADLINE_PASSED' });
    expect(results[8]).toEqual({ ok: false, reason: 'DEADLINE_PASSED' });
    for (const i of [0, 2, 3, 5, 6, 7]) expect(results[i].ok, String(i)).toBe(true);
    expect(await ordersOf([late.id, justLate.id, lateDuplicate.id])).toEqual([]);
    expect((await ordersOf(onTime.map((r) => r.id))).length).toBe(6);
  });

  it('when a batch statement fails, every caller of it throws and nothing of the batch is written', async () => {
    const { db: closing, pool } = createDb(t.app.config.DATABASE_URL, 2);
    const store = new OrderStore(closing);
    await sql`select 1`.execute(closing); // connected, then the pool goes away
    await pool.end();
    const rows = Array.from({ length: 20 }, () => row());
    const results = await insertAll(store, rows);
    expect(store.groupCommit.statements).toBe(1);
    for (const r of results) {
      expect(r).toHaveProperty('error');
      expect(String((r as { error: unknown }).error)).toMatch(/pool/i);
    }
    expect(await ordersOf(rows.map((r) => r.id))).toEqual([]);
  });

  it('a statement cancelled by PostgreSQL fails every caller of its batch, with a code the caller treats as “not committed”', async () => {
    // The store's connections give up on a lock after 200 ms while another transaction holds the table.
    const url = new URL(t.app.config.DATABASE_URL);
    url.searchParams.set('options', '-c lock_timeout=200');
    const { db: impatient } = createDb(url.toString(), 2);
    const store = new OrderStore(impatient);
    const rows = Array.from({ length: 12 }, () => row());
    try {
      await db.transaction().execute(async (trx) => {
        await sql`lock table orders in exclusive mode`.execute(trx);
        const results = await insertAll(store, rows);
        expect(store.groupCommit.statements).toBe(1);
        for (const r of results) expect((r as { error: { code?: string } }).error?.code).toBe('55P03');
      });
    } finally {
      await impatient.destroy();
    }
    expect(await ordersOf(rows.map((r) => r.id))).toEqual([]);
  });

  it('a row whose data PostgreSQL refuses fails only its own caller; the rest of its batch commits once', async () => {
    const store = new OrderStore(db);
    const taken = row();
    expect((await store.insert(taken)).ok).toBe(true);
    const good = Array.from({ length: 8 }, () => row({ idempotencyKey: null }));
    const badQuantity = row({ quantity: 0 }); // orders_quantity_check
    const sameHold = row({ reservationId: taken.reservationId }); // one order per hold
    const before = { ...store.groupCommit };
    const results = await insertAll(store, [...good.slice(0, 4), badQuantity, ...good.slice(4), sameHold]);
    // The batch statement failed as a whole, then each row was written alone.
    expect(store.groupCommit.statements - before.statements).toBe(1 + 10);

    expect((results[4] as { error: { code?: string } }).error?.code).toBe('23514');
    expect((results[9] as { error: { code?: string } }).error?.code).toBe('23505');
    for (const i of [0, 1, 2, 3, 5, 6, 7, 8]) expect((results[i] as { outcome: InsertOutcome }).outcome?.ok, String(i)).toBe(true);
    // Each good row exactly once (null keys: nothing but the failed statement's atomicity prevents a double).
    const written = await db.selectFrom('orders').select(['reservation_id', sql<number>`count(*)`.as('n')])
      .where('reservation_id', 'in', [...good, badQuantity].map((r) => r.reservationId)).groupBy('reservation_id').execute();
    expect(written.map((w) => Number(w.n))).toEqual(good.map(() => 1));
    expect(new Set(written.map((w) => w.reservation_id))).toEqual(new Set(good.map((r) => r.reservationId)));
    expect(await ordersOf([sameHold.id, badQuantity.id])).toEqual([]);
  });
});

describe('purchases through the API share statements', () => {
  it('200 simultaneous successful purchases commit with fewer statements than orders, each answered with its own order', async () => {
    const sale = await createSale(t, { stock: 200, perUserLimit: 1 });
    const customers = Array.from({ length: 200 }, (_, i) => `gc-buyer-${i}`);
    const tokens = await Promise.all(customers.map((c) => t.token(c)));
    const stats = t.app.services.orders.groupCommit;
    const before = { ...stats };
    const results = await Promise.all(customers.map((_, i) =>
      t.client.gql(PURCHASE, { input: { saleItemId: sale.itemIds[0], quantity: 1, idempotencyKey: `gc-api-${i}` } }, tokens[i])));
    const outcomes = results.map((r) => r.data?.purchase);
    expect(outcomes.filter((o) => o?.__typename === 'PurchaseSuccess')).toHaveLength(200);
    const rows = stats.rows - before.rows;
    const statements = stats.statements - before.statements;
    expect(rows).toBe(200);
    // How many share a turn depends on timing; that some did is certain with 200 at once.
    expect(statements).toBeLessThan(rows);

    const orderIds = outcomes.map((o) => o.order.id as string);
    expect(new Set(orderIds).size).toBe(200);
    const committed = await ordersOf(orderIds);
    const byId = new Map(committed.map((o) => [o.id, o]));
    outcomes.forEach((o, i) => expect(byId.get(o.order.id)).toMatchObject({ customer_id: customers[i], idempotency_key: `gc-api-${i}`, status: 'CONFIRMED' }));
  });
});
