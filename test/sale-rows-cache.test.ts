import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { SalesService } from '../src/services/sales.js';
import type { SaleSnapshot, StockEngine } from '../src/services/stock/engine.js';
import { createSale } from './support/fixtures.js';
import { GqlClient, isolation, REDIS_URL, startInstancePair, type InstancePair, type TestServer } from './support/harness.js';
import { scrape } from './support/prometheus-text.js';

// Two instances in this process, sharing one database and one Redis prefix; each has its own
// services, so its own cache of sale rows. Background PostgreSQL readers are slowed down so that
// query counts only move with the requests under test.
const iso = isolation('salerowscache');
// The response cache is off: these reads must reach the row cache beneath it, and a read on one
// instance right after a change on the other would otherwise wait for the pub/sub invalidation.
const env = { RATE_LIMIT_ENABLED: 'false', RECOVERY_INTERVAL_MS: '60000', RECONCILE_INTERVAL_MS: '3600000', RESPONSE_CACHE_ENABLED: 'false' };
let a: App;
let b: App;
let t: TestServer; // instance A, for the fixtures
let onA: GqlClient;
let onB: GqlClient;
let pair: InstancePair;
let redis: Redis;

beforeAll(async () => {
  pair = await startInstancePair(iso, env);
  ({ a, b, t, onA, onB } = pair);
  redis = new Redis(REDIS_URL);
});

afterAll(async () => {
  redis?.disconnect();
  await pair?.close();
});

const SALE_ROWS = `query($id: ID!) { sale(id: $id) { id name startsAt endsAt perUserLimit holdSeconds status items { id initialStock available } } }`;
const STOCK_READ = `query($id: ID!) { sale(id: $id) { items { id available } } }`;

async function read(client: GqlClient, saleId: string, query = SALE_ROWS) {
  const r = await client.gql(query, { id: saleId });
  expect(r.errors).toBeUndefined();
  return r.data.sale;
}

async function admin(query: string, variables: Record<string, unknown>) {
  const r = await onA.gql(query, variables, t.admin);
  expect(r.errors).toBeUndefined();
  return r.data;
}

/** PostgreSQL selects an instance has run so far (every table), from its own /metrics. */
async function selects(app: App): Promise<number> {
  return (await scrape(app.url)).value('flashsale_postgres_duration_seconds_count', { operation: 'select' });
}

/** Reads on B until its cache holds the sale (a new sale is given its first revision by a read). */
async function warm(saleId: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const before = await selects(b);
    await read(onB, saleId);
    if ((await selects(b)) === before) return;
  }
  throw new Error('the sale never came from the cache');
}

describe('cached sale rows', () => {
  it('a read of a cached sale runs no PostgreSQL query; its first read does', async () => {
    const { saleId } = await createSale(t, { items: 3, stock: 7 });
    await new Promise((r) => setTimeout(r, 500)); // each instance's waiting-room scheduler looks the new sale up once
    const idle = await selects(b);
    expect(await selects(b)).toBe(idle); // scraping itself queries nothing

    await read(onB, saleId, STOCK_READ);
    expect(await selects(b)).toBeGreaterThan(idle); // not cached yet: the counter does see reads
    await warm(saleId);

    const before = await selects(b);
    const reads = await Promise.all(Array.from({ length: 40 }, () => read(onB, saleId, STOCK_READ)));
    for (const sale of reads) expect(sale.items.map((i: { available: number }) => i.available)).toEqual([7, 7, 7]);
    await read(onB, saleId);
    expect(await selects(b)).toBe(before);
  });

  it('updateSale on A is read at once on B: name, dates, limits', async () => {
    const { saleId } = await createSale(t, { startsInMs: 3_600_000, endsInMs: 7_200_000 });
    await warm(saleId);
    const startsAt = new Date(Date.now() + 1_800_000).toISOString();
    const endsAt = new Date(Date.now() + 9_000_000).toISOString();
    await admin(`mutation($id: ID!, $input: UpdateSaleInput!) { updateSale(id: $id, input: $input) { id } }`, {
      id: saleId, input: { name: 'Renamed on A', startsAt, endsAt, perUserLimit: 1, holdSeconds: 45 },
    });
    expect(await read(onB, saleId)).toMatchObject({ name: 'Renamed on A', startsAt, endsAt, perUserLimit: 1, holdSeconds: 45, status: 'SCHEDULED' });

    // Each field alone too, from a warm cache each time.
    for (const [input, expected] of [
      [{ name: 'Second name' }, { name: 'Second name' }],
      [{ perUserLimit: 3 }, { perUserLimit: 3 }],
      [{ holdSeconds: 90 }, { holdSeconds: 90 }],
    ] as const) {
      await warm(saleId);
      await admin(`mutation($id: ID!, $input: UpdateSaleInput!) { updateSale(id: $id, input: $input) { id } }`, { id: saleId, input });
      expect(await read(onB, saleId)).toMatchObject(expected);
    }
  });

  it('pauseSale, resumeSale and cancelSale on A are read at once on B, the row included', async () => {
    const { saleId } = await createSale(t, { stock: 5 });
    // No field of the API shows the row's admin state (status comes from Redis), so B's own read
    // path is asked too: it must not answer from a row cached before the change.
    const rowOnB = async () => (await b.services.sales.readSales([saleId]))[0]!.state;
    for (const [mutation, status, state] of [
      ['pauseSale', 'PAUSED', 'PAUSED'],
      ['resumeSale', 'ACTIVE', 'OPEN'],
      ['pauseSale', 'PAUSED', 'PAUSED'],
      ['cancelSale', 'CANCELLED', 'CANCELLED'],
    ] as const) {
      await warm(saleId);
      await rowOnB();
      await admin(`mutation($id: ID!) { ${mutation}(id: $id) { id } }`, { id: saleId });
      expect((await read(onB, saleId)).status).toBe(status);
      expect(await rowOnB()).toBe(state);
    }
  });

  it('adjustStock on A is read at once on B', async () => {
    const { saleId, itemIds } = await createSale(t, { items: 2, stock: 10 });
    await warm(saleId);
    await admin(`mutation($id: ID!) { adjustStock(saleItemId: $id, delta: 5, reason: "found a pallet") { id } }`, { id: itemIds[1] });
    expect((await read(onB, saleId)).items).toEqual([
      { id: itemIds[0], initialStock: 10, available: 10 },
      { id: itemIds[1], initialStock: 10, available: 15 },
    ]);
    await admin(`mutation($id: ID!) { adjustStock(saleItemId: $id, delta: -3, reason: "damaged") { id } }`, { id: itemIds[0] });
    expect((await read(onB, saleId, STOCK_READ)).items).toEqual([{ id: itemIds[0], available: 7 }, { id: itemIds[1], available: 15 }]);
  });

  it('a sale Redis no longer knows is read from PostgreSQL, also after it was cached', async () => {
    const live = await createSale(t, { stock: 4 });
    const scheduled = await createSale(t, { stock: 4, startsInMs: 3_600_000, endsInMs: 7_200_000 });
    for (const { saleId } of [live, scheduled]) {
      await warm(saleId);
      const keys = await redis.keys(`${iso.redisPrefix}{sale:${saleId}}:*`);
      expect(keys.length).toBeGreaterThan(0);
      await redis.del(...keys);
      // A change Redis cannot announce: only PostgreSQL knows it.
      await a.db.updateTable('sales').set({ name: 'Known to PostgreSQL only' }).where('id', '=', saleId).execute();
      const sale = await read(onB, saleId, `query($id: ID!) { sale(id: $id) { name items { id initialStock } } }`);
      expect(sale).toEqual({ name: 'Known to PostgreSQL only', items: [{ id: expect.any(String), initialStock: 4 }] });
    }
    // The started sale waits out the confirmation window before its rebuild; the scheduled one was
    // rebuilt by that read (without a revision), and its rows still follow PostgreSQL.
    await a.db.updateTable('sales').set({ name: 'Rebuilt, renamed' }).where('id', '=', scheduled.saleId).execute();
    expect(await read(onB, scheduled.saleId)).toMatchObject({ name: 'Rebuilt, renamed', status: 'SCHEDULED', items: [{ available: 4 }] });
  });
});

describe('snapshot calls of one sale', () => {
  it('share one script call within a turn of the event loop, never one sent before the caller asked', async () => {
    // A service of its own over a stand-in engine: the instances' background work (status watch,
    // gauges) calls the real engine at any time, and here every call must be counted.
    let available = 10;
    let calls = 0;
    let gate: Promise<void> | null = null;
    const engine = {
      async snapshot(): Promise<SaleSnapshot> {
        const late = gate;
        calls++;
        const read = available; // the script runs now…
        await late; // …and its reply may arrive much later
        return {
          now: Date.now(), startsAt: 0, endsAt: Date.now() + 60_000, state: 'OPEN', perUserLimit: 2, holdSeconds: 60,
          available: read, version: calls, revision: 'r1', soldOutAt: null, items: new Map([['item', { available: read, reserved: 0, sold: 0, initial: 10, adjusted: 0 }]]),
        };
      },
    } as unknown as StockEngine;
    const sales = new SalesService(a.db, engine, a.services.events, a.services.recovery);

    const together = await Promise.all(Array.from({ length: 20 }, () => sales.snapshot('sale')));
    expect(calls).toBe(1);
    expect(new Set(together)).toEqual(new Set([together[0]]));

    // A read is in flight (its script already ran) when a change completes; a read asked after
    // that must not be given the in-flight answer.
    let open!: () => void;
    gate = new Promise((r) => (open = r));
    const inFlight = sales.snapshot('sale');
    while (calls === 1) await new Promise((r) => setImmediate(r));
    available = 11;
    gate = null;
    const asked = sales.snapshot('sale');
    open();
    expect((await inFlight).available).toBe(10);
    expect((await asked).available).toBe(11);
    expect(calls).toBe(3);
  });
});
