import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/harness.js';
import { createSale } from './support/fixtures.js';
import { CANCEL_ORDER, PURCHASE, RESERVE, RELEASE } from './support/operations.js';

/**
 * Issue 17 f / item 10: a purchase/cancel loop must leave bounded state in Redis. Every per-hold,
 * per-key and per-customer entry carries a TTL or goes away with what it tracked.
 */
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer('retention', { RATE_LIMIT_ENABLED: 'false' });
});
afterAll(() => t?.close());

/** What a sale keeps in Redis: keys without a TTL, and the entries of its per-key and per-customer structures. */
async function footprint(saleId: string, customer: string) {
  const base = t.app.services.engine.keys.base(saleId);
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await t.app.redis.scan(cursor, 'MATCH', `${base}*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  const ttls = await Promise.all(keys.map((k) => t.app.redis.pttl(k)));
  return {
    keysWithoutTtl: keys.filter((_, i) => ttls[i] === -1).map((k) => k.slice(base.length).replace(customer, '<customer>')).sort(),
    idempotencyTtl: await t.app.redis.pttl(`${base}idem`),
    usageEntries: await t.app.redis.hlen(`${base}usage`),
    customerIndex: await t.app.redis.zcard(`${base}cres:${customer}`),
  };
}

async function cycles(item: string, customer: string, n: number, prefix: string) {
  const token = await t.token(customer);
  for (let i = 0; i < n; i++) {
    const p = (await t.client.gql(PURCHASE, { input: { saleItemId: item, quantity: 1, idempotencyKey: `${prefix}-${i}` } }, token)).data.purchase;
    expect(p.__typename).toBe('PurchaseSuccess');
    expect((await t.client.gql(CANCEL_ORDER, { id: p.order.id }, token)).data.cancelOrder.__typename).toBe('CancelOrderSuccess');
  }
}

describe('bounded Redis state', () => {
  it('N purchase/cancel cycles leave no more keys without a TTL or usage entries than one cycle does; remembered keys expire with the sale', async () => {
    const one = await createSale(t, { stock: 5, perUserLimit: 1 });
    await cycles(one.itemIds[0], 'ret-one', 1, 'one');
    const many = await createSale(t, { stock: 5, perUserLimit: 1 });
    await cycles(many.itemIds[0], 'ret-many', 40, 'many');
    const [a, b] = [await footprint(one.saleId, 'ret-one'), await footprint(many.saleId, 'ret-many')];
    expect(b.keysWithoutTtl).toEqual(a.keysWithoutTtl);
    // Each key replays its (cancelled) order — contract promise 3 — until a week after the sale's end.
    expect(b.idempotencyTtl).toBeGreaterThan(0);
    expect(b.usageEntries).toBe(a.usageEntries);
    // The customer's index has a TTL (checked above) and lists the holds of the last hour, at most 100.
    expect(b.customerIndex).toBeLessThanOrEqual(100);
  });

  it('a cancelled order\'s key still replays its order, even sold out, and refuses another quantity', async () => {
    const { itemIds: [item] } = await createSale(t, { stock: 2, perUserLimit: 2 });
    const token = await t.token('ret-key');
    const buy = async (quantity: number) => (await t.client.gql(PURCHASE, { input: { saleItemId: item, quantity, idempotencyKey: 'same' } }, token)).data.purchase;
    const first = await buy(2);
    expect((await t.client.gql(CANCEL_ORDER, { id: first.order.id }, token)).data.cancelOrder.__typename).toBe('CancelOrderSuccess');
    expect((await t.client.gql(PURCHASE, { input: { saleItemId: item, quantity: 2, idempotencyKey: 'other' } }, await t.token('ret-other'))).data.purchase.__typename).toBe('PurchaseSuccess');
    expect(await buy(1)).toMatchObject({ __typename: 'Rejected', code: 'IDEMPOTENCY_KEY_REUSED' });
    expect(await buy(2)).toMatchObject({ __typename: 'PurchaseSuccess', replayed: true, order: { id: first.order.id, status: 'CANCELLED' } });
  });

  it('every hold, confirmed or released, carries a TTL; a customer\'s index stays within 100 entries', async () => {
    const { saleId, itemIds: [item] } = await createSale(t, { stock: 1000, perUserLimit: 1000 });
    const token = await t.token('ret-holder');
    for (let i = 0; i < 130; i++) {
      const r = (await t.client.gql(RESERVE, { input: { saleItemId: item, quantity: 1, idempotencyKey: `h-${i}` } }, token)).data.reserve;
      expect(r.__typename).toBe('ReserveSuccess');
      if (i % 2 === 0) await t.client.gql(RELEASE, { id: r.reservation.id }, token);
    }
    await t.client.gql(PURCHASE, { input: { saleItemId: item, quantity: 1, idempotencyKey: 'bought' } }, token);
    const f = await footprint(saleId, 'ret-holder');
    expect(f.keysWithoutTtl.filter((k) => k.startsWith('res:') || k.startsWith('cres:'))).toEqual([]);
    expect(f.customerIndex).toBe(100);
  });
});
