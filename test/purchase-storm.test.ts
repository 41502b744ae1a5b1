import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { eventually, GqlClient, startTestServer, type TestServer } from './support/harness.js';
import { createSale } from './support/fixtures.js';
import { PURCHASE, SALE_ITEM } from './support/operations.js';

let t: TestServer;
beforeAll(async () => {
  // Rate limits have tests of their own; here one customer's bursts are the point.
  t = await startTestServer('storm', { RATE_LIMIT_ENABLED: 'false' });
});
afterAll(() => t?.close());

describe('purchase storm (real concurrency, real Redis and PostgreSQL)', () => {
  it('sells exactly the stock to 5,000 simultaneous purchases from 2,000 customers, nobody above the limit', async () => {
    const { saleId, itemIds } = await createSale(t, { stock: 1000, perUserLimit: 2 });
    const itemId = itemIds[0];
    const customers = Array.from({ length: 2000 }, (_, i) => `storm-customer-${i}`);
    const tokens = await Promise.all(customers.map((c) => t.token(c)));
    // Two independent connection pools: one customer's requests leave over different connections.
    const pools = [t.client, new GqlClient(t.app.url, 256)];
    const calls = Array.from({ length: 5000 }, (_, i) => {
      const c = i % customers.length;
      return pools[i % 2].gql(PURCHASE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: `k-${i}` } }, tokens[c]);
    });
    const results = await Promise.all(calls);
    await pools[1].close();

    expect(results.filter((r) => r.status >= 500)).toHaveLength(0);
    expect(results.filter((r) => r.errors)).toHaveLength(0);
    const outcomes = results.map((r) => r.data.purchase);
    const successes = outcomes.filter((o) => o.__typename === 'PurchaseSuccess');
    const codes = new Set(outcomes.filter((o) => o.__typename === 'Rejected').map((o) => o.code));
    expect(successes).toHaveLength(1000);
    expect([...codes].sort()).toEqual(['LIMIT_EXCEEDED', 'SOLD_OUT'].filter((c) => codes.has(c)).sort());
    expect(codes.has('SOLD_OUT')).toBe(true);

    const db = t.app.db;
    const sold = await db.selectFrom('orders').select((eb) => eb.fn.sum<number>('quantity').as('units')).where('sale_item_id', '=', itemId).where('status', '=', 'CONFIRMED').executeTakeFirstOrThrow();
    expect(Number(sold.units)).toBe(1000);
    const perCustomer = await db.selectFrom('orders').select(['customer_id', sql<number>`sum(quantity)`.as('units')]).where('sale_id', '=', saleId).groupBy('customer_id').execute();
    expect(Math.max(...perCustomer.map((r) => Number(r.units)))).toBeLessThanOrEqual(2);

    const live = await t.client.gql(SALE_ITEM, { id: itemId });
    expect(live.data.saleItem).toMatchObject({ available: 0, reserved: 0, sold: 1000, initialStock: 1000 });
    expect(live.data.saleItem.sale.status).toBe('SOLD_OUT');

    // The ledger (outbox drained into PostgreSQL) sums to the live available figure.
    await eventually(async () => (await t.app.services.ledger.sumOf(itemId)) === 0 && (await t.app.redis.xlen(t.app.services.engine.keys.outbox(saleId))) === 0, 5000);
    const events = await db.selectFrom('stock_events').select(['kind', sql<number>`count(*)`.as('n')]).where('sale_item_id', '=', itemId).groupBy('kind').execute();
    const byKind = Object.fromEntries(events.map((e) => [e.kind, Number(e.n)]));
    expect(byKind).toMatchObject({ INITIAL: 1, RESERVED: 1000, CONFIRMED: 1000 });

    // The admin's view of the same storm.
    const buyers = new Set(successes.map((s) => s.order.customerId)).size;
    const summary = (await t.client.gql(`query($id: ID!) { saleSummary(saleId: $id) {
      unitsSold orders uniqueBuyers revenueCents attempts rejections { code count } reservationsExpired waitlistSize soldOutAt sellOutSeconds } }`, { id: saleId }, t.admin)).data.saleSummary;
    expect(summary).toMatchObject({ unitsSold: 1000, orders: 1000, uniqueBuyers: buyers, revenueCents: String(1000 * 19_999), attempts: '5000', reservationsExpired: 0, waitlistSize: 0 });
    const rejectedByCode = Object.fromEntries(summary.rejections.map((r: { code: string; count: number }) => [r.code, r.count]));
    const expectedByCode: Record<string, number> = {};
    for (const o of outcomes) if (o.__typename === 'Rejected') expectedByCode[o.code] = (expectedByCode[o.code] ?? 0) + 1;
    expect(rejectedByCode).toEqual(expectedByCode);
    expect(summary.soldOutAt).not.toBeNull();
    expect(summary.sellOutSeconds).toBeGreaterThan(0);

    // The ledger through the API, page by page, in a stable order.
    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const page: any = (await t.client.gql(`query($id: ID!, $after: String) { stockEvents(saleItemId: $id, first: 100, after: $after) { edges { cursor node { id kind delta availableAfter } } pageInfo { hasNextPage endCursor } } }`, { id: itemId, after }, t.admin)).data.stockEvents;
      seen.push(...page.edges.map((e: any) => e.node.id));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    expect(seen).toHaveLength(2001);
    expect(new Set(seen).size).toBe(2001);
  });

  it('answers one idempotency key fired 20 times at once with one order and 19 replays', async () => {
    const { itemIds } = await createSale(t, { stock: 50 });
    const token = await t.token('idem-customer');
    const results = await Promise.all(
      Array.from({ length: 20 }, () => t.client.gql(PURCHASE, { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: 'same-key' } }, token)),
    );
    const outcomes = results.map((r) => r.data.purchase);
    expect(outcomes.every((o) => o.__typename === 'PurchaseSuccess')).toBe(true);
    expect(new Set(outcomes.map((o) => o.order.id)).size).toBe(1);
    expect(outcomes.filter((o) => o.replayed)).toHaveLength(19);
    const rows = await t.app.db.selectFrom('orders').selectAll().where('customer_id', '=', 'idem-customer').execute();
    expect(rows).toHaveLength(1);
    const live = await t.client.gql(SALE_ITEM, { id: itemIds[0] });
    expect(live.data.saleItem).toMatchObject({ available: 49, sold: 1, reserved: 0 });

    const reused = await t.client.gql(PURCHASE, { input: { saleItemId: itemIds[0], quantity: 2, idempotencyKey: 'same-key' } }, token);
    expect(reused.data.purchase).toMatchObject({ __typename: 'Rejected', code: 'IDEMPOTENCY_KEY_REUSED' });
  });

  it('keeps one customer within the limit when they fire many requests at once from many connections', async () => {
    const { itemIds } = await createSale(t, { stock: 100, perUserLimit: 3 });
    const token = await t.token('greedy');
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) => t.client.gql(PURCHASE, { input: { saleItemId: itemIds[0], quantity: 1 + (i % 2), idempotencyKey: `g-${i}` } }, token)),
    );
    const units = results.map((r) => r.data.purchase).filter((o) => o.__typename === 'PurchaseSuccess').reduce((n, o) => n + o.order.quantity, 0);
    expect(units).toBeLessThanOrEqual(3);
    expect(units).toBeGreaterThanOrEqual(2);
    const rows = await t.app.db.selectFrom('orders').select((eb) => eb.fn.sum<number>('quantity').as('u')).where('customer_id', '=', 'greedy').executeTakeFirstOrThrow();
    expect(Number(rows.u)).toBe(units);
  });
});
