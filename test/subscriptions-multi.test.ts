import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type App } from '../src/app.js';
import { createLogger } from '../src/logger.js';
import { TokenService } from '../src/services/auth.js';
import { API_COMMAND } from '../load/harness/server-process.js';
import { createSale } from './support/fixtures.js';
import { deleteRedisPrefix, dropDatabase, eventually, GqlClient, isolation, REDIS_URL, testConfig, type TestServer } from './support/harness.js';
import { Recorder, RESERVATION_CHANGED, SALE_STATUS_CHANGED, silentHoldAfterSnapshot, STOCK_CHANGED, wsClient, type StockUpdate } from './support/live.js';
import { PURCHASE } from './support/operations.js';

type StatusEvent = { saleStatusChanged: { status: string } };

const iso = isolation('live-multi');
const env = { RATE_LIMIT_ENABLED: 'false' };
let a: App;
let t: TestServer; // instance A, in this process
let b: { url: string; child: ChildProcess; client: GqlClient; exit: Promise<number | null> }; // instance B, another process
const clients: ReturnType<typeof wsClient>[] = [];
const client = (url: string, token?: string) => {
  const c = wsClient(url, token);
  clients.push(c);
  return c;
};

/** Starts the API (`dist/main.js`) in a child process on a free port, against the same database and Redis prefix. */
async function spawnInstance(): Promise<typeof b> {
  const child = spawn(process.execPath, [...API_COMMAND.nodeArgs, API_COMMAND.entry], {
    cwd: new URL('..', import.meta.url).pathname,
    env: {
      ...process.env, NODE_ENV: 'test', PORT: '0', HOST: '127.0.0.1', DATABASE_URL: iso.databaseUrl, REDIS_URL, REDIS_PREFIX: iso.redisPrefix,
      LOG_LEVEL: 'info', SEED_SAMPLE_SALE: 'false', SWEEP_INTERVAL_MS: '100', DRAIN_INTERVAL_MS: '100', ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('instance B did not start within 20 s')), 20_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const entry = JSON.parse(line);
        if (entry.msg === 'flash-sale API listening') {
          clearTimeout(timer);
          resolve(String(entry.url).replace(/\/graphql$/, ''));
        }
      } catch {
        // not a log line
      }
    });
    void exit.then((code) => reject(new Error(`instance B exited with ${code} before listening`)));
  });
  return { url, child, client: new GqlClient(url, 64), exit };
}

beforeAll(async () => {
  const config = testConfig(iso, env);
  a = await startApp(config, { log: createLogger(config.LOG_LEVEL) });
  const tokens = new TokenService(config.JWT_SECRET);
  const admin = (await tokens.sign('admin-1', 'admin')).token;
  t = {
    logs: [], app: a, client: new GqlClient(a.url), tokens, admin,
    token: async (subject, role = 'customer') => (await tokens.sign(subject, role)).token,
    close: async () => undefined,
  };
  b = await spawnInstance();
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.dispose()));
  if (b && b.child.exitCode === null) {
    b.child.kill('SIGTERM');
    await b.exit;
  }
  await b?.client.close();
  await t?.client.close();
  await a?.stop();
  await dropDatabase(iso.databaseUrl);
  await deleteRedisPrefix(iso.redisPrefix);
});

describe('two instances sharing PostgreSQL and Redis', () => {
  it('a subscriber on A sees the stock and status changes of purchases made on B, ending on the database state', async () => {
    const { saleId, itemIds } = await createSale(t, { items: 2, stock: 30, perUserLimit: 2 });
    const stock = new Recorder<{ stockChanged: StockUpdate }>(client(a.url), STOCK_CHANGED, { saleId });
    const status = new Recorder<StatusEvent>(client(a.url), SALE_STATUS_CHANGED, { saleId });
    await stock.waitFor(() => true);
    await status.waitFor(() => true);

    const buyers = await Promise.all(Array.from({ length: 40 }, (_, i) => t.token(`multi-${i}`)));
    const results = await Promise.all(
      buyers.map((token, i) => b.client.gql(PURCHASE, { input: { saleItemId: itemIds[i % 2], quantity: 2, idempotencyKey: `m-${i}` } }, token)),
    );
    expect(results.filter((r) => r.data?.purchase?.__typename === 'PurchaseSuccess')).toHaveLength(30);

    const final = await stock.waitFor((d) => d.stockChanged.status === 'SOLD_OUT' && d.stockChanged.items.every((i) => i.available === 0 && i.reserved === 0), 5000);
    await status.waitFor((d) => d.saleStatusChanged.status === 'SOLD_OUT', 5000);
    expect(status.data.map((d) => d.saleStatusChanged.status)).toEqual(['ACTIVE', 'SOLD_OUT']);

    const rows = await a.db
      .selectFrom('orders')
      .select(['sale_item_id', (eb) => eb.fn.sum<string>('quantity').as('units')])
      .where('sale_id', '=', saleId)
      .where('status', '=', 'CONFIRMED')
      .groupBy('sale_item_id')
      .execute();
    const soldInDb = new Map(rows.map((r) => [r.sale_item_id, Number(r.units)]));
    for (const level of final.data!.stockChanged.items) {
      expect(level).toMatchObject({ available: 0, reserved: 0, sold: 30 });
      expect(soldInDb.get(level.saleItemId)).toBe(level.sold);
    }
  });

  it('announces a scheduled sale turning ACTIVE then ENDED, once each, on both instances, with no request driving it', async () => {
    const { saleId } = await createSale(t, { stock: 5, startsInMs: 2000, endsInMs: 4000 });
    const sale = (await t.client.gql(`query($id: ID!) { sale(id: $id) { startsAt endsAt } }`, { id: saleId })).data.sale;
    const onA = new Recorder<StatusEvent>(client(a.url), SALE_STATUS_CHANGED, { saleId });
    const onB = new Recorder<StatusEvent>(client(b.url), SALE_STATUS_CHANGED, { saleId });
    const active = await onA.waitFor((d) => d.saleStatusChanged.status === 'ACTIVE', 5000);
    const ended = await onA.waitFor((d) => d.saleStatusChanged.status === 'ENDED', 5000);
    await onB.waitFor((d) => d.saleStatusChanged.status === 'ENDED', 2000);
    await new Promise((r) => setTimeout(r, 500));
    console.log(`saleStatusChanged: ACTIVE ${active.at - Date.parse(sale.startsAt)} ms after startsAt, ENDED ${ended.at - Date.parse(sale.endsAt)} ms after endsAt`);
    expect(active.at - Date.parse(sale.startsAt)).toBeLessThan(1000);
    expect(ended.at - Date.parse(sale.endsAt)).toBeLessThan(1000);
    expect(active.at).toBeGreaterThanOrEqual(Date.parse(sale.startsAt));
    for (const r of [onA, onB]) expect(r.data.map((d) => d.saleStatusChanged.status)).toEqual(['SCHEDULED', 'ACTIVE', 'ENDED']);
  });

  it("gives A's subscribers a fresh snapshot after its pub/sub connection drops and returns, and later events still arrive", async () => {
    const { saleId, itemIds } = await createSale(t, { stock: 50, perUserLimit: 5 });
    const sub = new Recorder<{ stockChanged: StockUpdate }>(client(a.url), STOCK_CHANGED, { saleId });
    const holds = new Recorder<{ reservationChanged: { id: string; status: string } }>(client(a.url, await t.token('silent')), RESERVATION_CHANGED, { saleId });
    const firstVersion = await silentHoldAfterSnapshot(sub, a.services.engine, saleId, itemIds[0], 'silent');
    expect(holds.events).toHaveLength(0);

    const admin = new Redis(REDIS_URL);
    try {
      const name = a.services.live.hub.connectionName;
      const line = (await admin.call('CLIENT', 'LIST', 'TYPE', 'pubsub') as string).split('\n').find((l) => l.includes(` name=${name} `));
      expect(line).toBeDefined();
      const id = /\bid=(\d+)/.exec(line!)![1];
      expect(await admin.call('CLIENT', 'KILL', 'ID', id)).toBe(1);
      const fresh = await sub.waitFor((d) => d.stockChanged.items[0].available === 47, 5000);
      expect(fresh.data!.stockChanged.version).toBeGreaterThan(firstVersion);
      await holds.waitFor((d) => d.reservationChanged.status === 'HELD', 5000);
      const after = (await admin.call('CLIENT', 'LIST', 'TYPE', 'pubsub') as string).split('\n').find((l) => l.includes(` name=${name} `));
      expect(/\bid=(\d+)/.exec(after ?? '')?.[1]).not.toBe(id);
    } finally {
      admin.disconnect();
    }

    const bought = await b.client.gql(PURCHASE, { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: 'after-drop' } }, await t.token('after-drop'));
    expect(bought.data.purchase.__typename).toBe('PurchaseSuccess');
    const later = await sub.waitFor((d) => d.stockChanged.items[0].sold === 1, 5000);
    expect(later.data!.stockChanged.items[0].available).toBe(46);
  });

  it('on SIGTERM, instance B closes its WebSocket subscriptions with 1001 and exits 0', async () => {
    const { saleId } = await createSale(t, { stock: 5 });
    const ws = client(b.url);
    const sub = new Recorder(ws, STOCK_CHANGED, { saleId });
    await sub.waitFor(() => true);
    const sentAt = Date.now();
    b.child.kill('SIGTERM');
    expect(await b.exit).toBe(0);
    expect(Date.now() - sentAt).toBeLessThan(10_000);
    await eventually(async () => ws.closes.length > 0, 2000);
    expect(ws.closes[0]).toBe(1001);
  });
});
