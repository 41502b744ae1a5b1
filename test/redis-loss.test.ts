import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { eventually, startTestServer, type TestServer } from './support/harness.js';
import { createSale } from './support/fixtures.js';
import { PURCHASE, RESERVE, SALE_ITEM } from './support/operations.js';
import { freePort, RedisProcess } from './support/redis-process.js';

let redis: RedisProcess;
let t: TestServer;
beforeAll(async () => {
  redis = new RedisProcess(await freePort());
  await redis.start();
  t = await startTestServer('redisloss', {
    REDIS_URL: redis.url, CONFIRM_WINDOW_MS: '1500', RECOVERY_INTERVAL_MS: '200', RATE_LIMIT_ENABLED: 'false',
  });
});
afterAll(async () => {
  await t?.close();
  await redis?.kill();
});

/** A client as a shop would write it: retries what the server says to retry, after the time it says. */
async function buyUntilDecided(token: string, input: Record<string, unknown>, deadline: number) {
  for (;;) {
    const r = await t.client.gql(PURCHASE, { input }, token);
    expect(r.status).toBeLessThan(500);
    expect(r.errors).toBeUndefined();
    const p = r.data.purchase;
    if (p.code !== 'TEMPORARILY_UNAVAILABLE' || Date.now() > deadline) return p;
    expect(p.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    await new Promise((res) => setTimeout(res, 100));
  }
}

describe('Redis restarted with its data lost in the middle of a sale', () => {
  it('rebuilds live stock, limits and idempotency keys from PostgreSQL, and goes on without overselling', async () => {
    const { saleId, itemIds } = await createSale(t, { stock: 300, perUserLimit: 2, holdSeconds: 60 });
    const item = itemIds[0];
    const tokens = await Promise.all(Array.from({ length: 400 }, (_, i) => t.token(`c${i}`)));

    // Before: 200 customers buy one each, 20 others hold one each.
    const before = await Promise.all(tokens.slice(0, 200).map((tok, i) => t.client.gql(PURCHASE, { input: { saleItemId: item, idempotencyKey: `first-${i}` } }, tok)));
    const firstOrders = before.map((r) => r.data.purchase.order.id);
    const holds = await Promise.all(tokens.slice(200, 220).map((tok, i) => t.client.gql(RESERVE, { input: { saleItemId: item, idempotencyKey: `hold-${i}` } }, tok)));
    const heldIds = holds.map((r) => r.data.reserve.reservation.id);
    expect((await t.client.gql(SALE_ITEM, { id: item })).data.saleItem).toMatchObject({ available: 80, reserved: 20, sold: 200 });
    await eventually(async () => (await t.app.db.selectFrom('reservations').select('id').where('sale_id', '=', saleId).where('status', '=', 'HELD').execute()).length === 20);

    await redis.kill();
    const storm = (async () => {
      // Customers keep pressing buy while the cache is down and while it is rebuilt.
      const deadline = Date.now() + 20_000;
      return Promise.all(tokens.map((tok, i) => buyUntilDecided(tok, { saleItemId: item, idempotencyKey: `second-${i}` }, deadline)));
    })();
    await new Promise((r) => setTimeout(r, 300));
    await redis.start();
    const after = await storm;

    // Replays of keys that succeeded before the loss return the same order.
    const replays = await Promise.all(tokens.slice(0, 50).map((tok, i) => buyUntilDecided(tok, { saleItemId: item, idempotencyKey: `first-${i}` }, Date.now() + 10_000)));
    replays.forEach((p, i) => expect(p).toMatchObject({ __typename: 'PurchaseSuccess', replayed: true, order: { id: firstOrders[i] } }));

    const outcomes = after.map((p) => (p.__typename === 'PurchaseSuccess' ? 'OK' : p.code));
    expect(outcomes.filter((o) => !['OK', 'SOLD_OUT', 'LIMIT_EXCEEDED'].includes(o))).toEqual([]);

    const db = t.app.db;
    const confirmed = Number((await db.selectFrom('orders').select(sql<number>`coalesce(sum(quantity), 0)`.as('u')).where('sale_item_id', '=', item).where('status', '=', 'CONFIRMED').executeTakeFirstOrThrow()).u);
    expect(confirmed).toBe(300);
    const perCustomer = await db.selectFrom('orders').select(['customer_id', sql<number>`sum(quantity)`.as('u')]).where('sale_id', '=', saleId).groupBy('customer_id').execute();
    expect(Math.max(...perCustomer.map((r) => Number(r.u)))).toBeLessThanOrEqual(2);
    const live = (await t.client.gql(SALE_ITEM, { id: item })).data.saleItem;
    expect(live).toMatchObject({ available: 0, reserved: 0, sold: 300 });

    // The holds of the lost cache are gone, and their customers are told why.
    const res = await t.client.gql(`query($id: ID!) { reservation(id: $id) { status endReason } }`, { id: heldIds[0] }, tokens[200]);
    expect(res.data.reservation).toEqual({ status: 'RELEASED', endReason: 'STOCK_REBUILT' });

    // The ledger sums to live stock again, and reconciliation finds no drift.
    await eventually(async () => (await t.app.services.ledger.sumOf(item)) === 0, 5000);
    const drift = await t.app.services.recovery.reconcile();
    expect(drift.filter((d) => d.saleId === saleId)).toEqual([{ saleId, saleItemId: item, drift: 0 }]);
  });
});
