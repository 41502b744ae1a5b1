import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type App } from '../src/app.js';
import { createLogger } from '../src/logger.js';
import { schema } from '../src/schema/index.js';
import { PersistedOperations } from '../src/server/persisted-operations.js';
import { ResponseCache } from '../src/server/response-cache.js';
import { SaleEvents } from '../src/services/sale-events.js';
import { ResponseCacheInvalidation } from '../src/server/response-cache-events.js';
import { createSale } from './support/fixtures.js';
import { eventually, GqlClient, isolation, REDIS_URL, startInstancePair, testConfig, type InstancePair, type TestServer } from './support/harness.js';
import { PURCHASE, SALE } from './support/operations.js';
import { scrape } from './support/prometheus-text.js';
import persistedDocuments from '../src/generated/graphql/persisted-documents.json' with { type: 'json' };

// Two instances in this process on one database and Redis prefix. Answers may live 10 s (the
// maximum), so an answer that changes within a test's bounds can only have been invalidated.
const iso = isolation('responsecache');
const env = { RATE_LIMIT_ENABLED: 'false', RESPONSE_CACHE_MAX_AGE_MS: '10000' };
/** Generous for the pub/sub delay (~1 ms) on a loaded shared machine, far below the 10 s max age. */
const ACROSS_INSTANCES_MS = 1000;
let a: App;
let b: App;
let t: TestServer; // instance A, for the fixtures
let onA: GqlClient;
let onB: GqlClient;
let pair: InstancePair;

beforeAll(async () => {
  pair = await startInstancePair(iso, env);
  ({ a, b, t, onA, onB } = pair);
});

afterAll(() => pair?.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function cached(app: App, result: 'hit' | 'miss'): Promise<number> {
  return (await scrape(app.url)).value('flashsale_response_cache_requests_total', { result });
}

async function read(client: GqlClient, saleId: string) {
  const r = await client.gql(SALE, { id: saleId });
  expect(r.errors).toBeUndefined();
  return r.data.sale as { status: string; available: number; items: { id: string; available: number }[] };
}

/** A new sale, once the status watch announced its first status (that event would drop what the test reads first). */
async function quietSale(opts: Parameters<typeof createSale>[1] = {}) {
  const sale = await createSale(t, opts);
  await sleep(500);
  return sale;
}

/** Reads until the instance answers from its cache; returns that answer. */
async function warm(app: App, client: GqlClient, saleId: string) {
  for (let i = 0; i < 20; i++) {
    const hits = await cached(app, 'hit');
    const sale = await read(client, saleId);
    if ((await cached(app, 'hit')) > hits) return sale;
  }
  throw new Error('the read never came from the cache');
}

async function admin(query: string, variables: Record<string, unknown>) {
  const r = await onA.gql(query, variables, t.admin);
  expect(r.errors).toBeUndefined();
  return r.data;
}

describe('response cache of anonymous reads', () => {
  it('answers a repeated anonymous read from the cache, byte for byte, by text or by persisted id', async () => {
    const { saleId } = await quietSale({ stock: 5 });
    const body = JSON.stringify({ query: SALE, variables: { id: saleId } });
    const [hits, misses] = [await cached(a, 'hit'), await cached(a, 'miss')];
    const first = await onA.raw(body);
    const second = await onA.raw(body);
    expect(second).toEqual(first);
    expect(JSON.parse(second.body).data.sale.available).toBe(5);
    expect(await cached(a, 'miss')).toBe(misses + 1);
    expect(await cached(a, 'hit')).toBe(hits + 1);

    const id = Object.entries(persistedDocuments as Record<string, string>).find(([, text]) => text.startsWith('query SaleLevels('))?.[0];
    expect(id).toBeDefined();
    const byId = JSON.stringify({ documentId: id, variables: { id: saleId } });
    await onA.raw(byId);
    const again = await onA.raw(byId);
    expect(JSON.parse(again.body).data.sale.available).toBe(5);
    expect(await cached(a, 'hit')).toBe(hits + 2);
  });

  it('a purchase on A is read at once on A, and on B within the pub/sub delay', async () => {
    const { saleId, itemIds } = await quietSale({ stock: 5 });
    expect((await warm(a, onA, saleId)).available).toBe(5);
    expect((await warm(b, onB, saleId)).available).toBe(5);

    const bought = await onA.gql(PURCHASE, { input: { saleItemId: itemIds[0], quantity: 2, idempotencyKey: 'rc-1' } }, await t.token('rc-buyer'));
    expect(bought.data.purchase.__typename).toBe('PurchaseSuccess');
    expect((await read(onA, saleId)).available).toBe(3);
    const started = Date.now();
    await eventually(async () => (await read(onB, saleId)).available === 3, ACROSS_INSTANCES_MS, 5);
    expect(Date.now() - started).toBeLessThan(ACROSS_INSTANCES_MS);
  });

  it('the clock\'s transition at startsAt is read within the status watch\'s delay', async () => {
    const startsInMs = 2500;
    const createdAt = Date.now();
    const { saleId } = await quietSale({ stock: 5, startsInMs });
    const startsAt = createdAt + startsInMs;
    // Both instances hold the SCHEDULED answer until the start.
    expect((await warm(a, onA, saleId)).status).toBe('SCHEDULED');
    expect((await warm(b, onB, saleId)).status).toBe('SCHEDULED');
    await sleep(Math.max(0, startsAt - Date.now() - 300));
    expect((await warm(a, onA, saleId)).status).toBe('SCHEDULED');
    expect((await warm(b, onB, saleId)).status).toBe('SCHEDULED');

    await eventually(async () => (await read(onA, saleId)).status === 'ACTIVE' && (await read(onB, saleId)).status === 'ACTIVE', 5000, 5);
    // The status watch looks every 200 ms; the event then reaches both instances.
    expect(Date.now() - startsAt).toBeLessThan(1200);
  });

  it('admin changes on A (adjustStock, pauseSale) are read at once on A, and on B within the pub/sub delay', async () => {
    const { saleId, itemIds } = await quietSale({ stock: 10 });
    await warm(a, onA, saleId);
    await warm(b, onB, saleId);
    await admin(`mutation($id: ID!) { adjustStock(saleItemId: $id, delta: 5, reason: "found a pallet") { id } }`, { id: itemIds[0] });
    expect((await read(onA, saleId)).available).toBe(15);
    await eventually(async () => (await read(onB, saleId)).available === 15, ACROSS_INSTANCES_MS, 5);

    await warm(a, onA, saleId);
    await warm(b, onB, saleId);
    await admin(`mutation($id: ID!) { pauseSale(id: $id) { id } }`, { id: saleId });
    expect((await read(onA, saleId)).status).toBe('PAUSED');
    await eventually(async () => (await read(onB, saleId)).status === 'PAUSED', ACROSS_INSTANCES_MS, 5);
  });

  it('never caches nor shares viewer-scoped answers, requests with a token, or mutations', async () => {
    const { saleId } = await quietSale({ stock: 5 });
    const [hits, misses] = [await cached(a, 'hit'), await cached(a, 'miss')];
    const me = `query { me { id orders { edges { node { id } } } } }`;
    for (const customer of ['rc-alice', 'rc-bob', 'rc-alice', 'rc-bob']) {
      const r = await onA.gql(me, {}, await t.token(customer));
      expect(r.data.me.id).toBe(customer);
    }
    // Anonymous, but viewer-scoped (or mixed with a viewer field): executed every time.
    for (let i = 0; i < 2; i++) {
      expect((await onA.gql(me)).data?.me ?? null).toBeNull();
      expect((await onA.gql(`query($id: ID!) { sale(id: $id) { id } me { id } }`, { id: saleId })).data?.me ?? null).toBeNull();
    }
    // A public read with a token goes past the cache.
    for (let i = 0; i < 2; i++) expect((await onA.gql(SALE, { id: saleId }, await t.token('rc-alice'))).data.sale.available).toBe(5);
    // An anonymous mutation runs every time: the second registration of one email is refused.
    const register = `mutation($email: String!, $password: String!) { register(email: $email, password: $password) { customerId } }`;
    const vars = { email: `rc-${randomBytes(4).toString('hex')}@example.com`, password: 'correct horse battery staple' };
    const first = await onA.gql(register, vars);
    const second = await onA.gql(register, vars);
    expect(first.data.register.customerId).toBeDefined();
    expect(second.errors?.length).toBeGreaterThan(0);

    expect(await cached(a, 'hit')).toBe(hits);
    expect(await cached(a, 'miss')).toBe(misses);
  });

  it('RESPONSE_CACHE_ENABLED=false: every read executes and sees a change no event announced', async () => {
    const off = await startApp(testConfig(iso, { ...env, RESPONSE_CACHE_ENABLED: 'false' }), { log: createLogger('silent') });
    const onOff = new GqlClient(off.url, 4);
    try {
      const { saleId, itemIds } = await quietSale({ stock: 5 });
      await warm(a, onA, saleId);
      expect((await read(onOff, saleId)).available).toBe(5);
      // Stock changed behind the services' back: no event, so only a read that executes sees it.
      await a.services.engine.adjust(saleId, itemIds[0], 2, 'silent', 'admin-1');
      expect((await read(onOff, saleId)).available).toBe(7);
      expect((await read(onA, saleId)).available).toBe(5);
      expect((await scrape(off.url)).names.has('flashsale_response_cache_requests_total')).toBe(false);
    } finally {
      await onOff.close();
      await off.stop();
    }
  });
});

/**
 * The cache and its invalidation on their own, over real Redis, used the way the fast lane uses it
 * by a stand-in that numbers its answers: a cached answer repeats the number, an executed one gets
 * a new one. Events
 * from the subscription are held back 200 ms (a slow network between instances), so what happens
 * sooner can only come from this instance's own publishes.
 */
describe('response cache and its event subscription', () => {
  const prefix = `${iso.redisPrefix}unit:`;
  let cache: ResponseCache;
  let events: ResponseCacheInvalidation;
  let publisher: Redis;
  let saleEvents: SaleEvents;
  let redis: Redis;
  let answered = 0;
  let hold: Promise<void> | null = null;
  const lives: boolean[] = [];
  const EVENT_DELAY_MS = 200;

  beforeAll(async () => {
    cache = new ResponseCache({ schema, persisted: PersistedOperations.generated(), registry: new Registry(), maxAgeMs: 10_000 });
    const setLive = cache.setLive.bind(cache);
    cache.setLive = (live) => {
      lives.push(live);
      setLive(live);
    };
    // A dropped connection comes back after 300 ms, so the test can look at the cache meanwhile.
    events = new ResponseCacheInvalidation(cache, (name) => delayedEvents(new Redis(REDIS_URL, { connectionName: name, retryStrategy: () => 300 })), prefix, createLogger('silent'));
    publisher = new Redis(REDIS_URL);
    saleEvents = new SaleEvents(publisher, prefix, createLogger('silent'));
    redis = new Redis(REDIS_URL);
    await events.start(saleEvents);
  });
  afterAll(async () => {
    await events?.close();
    publisher?.disconnect();
    redis?.disconnect();
  });
  afterEach(() => {
    hold = null;
  });

  /** What the fast lane does with the cache: look up, else execute (here: number) and keep. */
  async function ask(saleId: string): Promise<number> {
    const params = { query: SALE, variables: { id: saleId } };
    const key = cache.keyOf({ headers: {} } as IncomingMessage, Buffer.from(JSON.stringify(params)));
    const hit = key === null ? undefined : cache.cached(key);
    if (hit) return (JSON.parse(hit.text) as { data: { sale: { n: number } } }).data.sale.n;
    const ticket = key === null ? null : cache.begin(key, params);
    const n = ++answered;
    await hold;
    const text = JSON.stringify({ data: { sale: { id: 'x', n } } });
    if (ticket) cache.keep(ticket, 200, { 'content-type': 'application/json; charset=utf-8' }, text);
    return n;
  }

  const channel = (saleId: string) => `${prefix}events:{sale:${saleId}}`;

  function delayedEvents(client: Redis): Redis {
    const emit = client.emit.bind(client);
    client.emit = ((event: string | symbol, ...args: unknown[]) => {
      if (event !== 'pmessage') return emit(event, ...args);
      setTimeout(() => emit(event, ...args), EVENT_DELAY_MS);
      return true;
    }) as typeof client.emit;
    return client;
  }

  it('drops a sale\'s answers as this instance publishes a change, before the command is sent', async () => {
    const n = await ask('s1');
    expect(await ask('s1')).toBe(n);
    const other = await ask('s2');
    void saleEvents.stockChanged('s1');
    expect(await ask('s1')).toBeGreaterThan(n);
    expect(await ask('s2')).toBe(other);
  });

  it('drops a sale\'s answers on another instance\'s event', async () => {
    const n = await ask('s3');
    expect(await ask('s3')).toBe(n);
    await redis.publish(channel('s3'), '{"type":"sale","saleId":"s3"}');
    await eventually(async () => (await ask('s3')) > n, ACROSS_INSTANCES_MS, 5);
  });

  it('does not keep an answer read before a change that was announced while it was in flight', async () => {
    let release!: () => void;
    hold = new Promise((r) => (release = r));
    const before = answered;
    const inFlight = ask('s4');
    await eventually(async () => answered > before, 1000, 5);
    void saleEvents.stockChanged('s4');
    release();
    const stale = await inFlight;
    hold = null;
    expect(await ask('s4')).toBeGreaterThan(stale);
  });

  it('serves nothing while its subscription is down, and starts afresh once Redis confirms it again', async () => {
    const n = await ask('s5');
    expect(await ask('s5')).toBe(n);
    const clients = (await redis.client('LIST')) as string;
    const id = clients.split('\n').find((l) => l.includes(` name=${events.connectionName} `))?.match(/^id=(\d+)/)?.[1];
    expect(id).toBeDefined();
    const livesBefore = lives.length;
    await redis.client('KILL', 'ID', id!);
    await eventually(async () => lives.length > livesBefore, 1000, 5);
    expect(cache.live).toBe(false);
    // Down: every request executes, and nothing is kept.
    const down1 = await ask('s5');
    const down2 = await ask('s5');
    expect(down1).toBeGreaterThan(n);
    expect(down2).toBeGreaterThan(down1);
    await eventually(async () => cache.live, 3000, 10);
    expect(lives.slice(livesBefore)).toEqual([false, true]);
    // Back: the cache starts empty (events may have been missed), then serves again.
    const back = await ask('s5');
    expect(back).toBeGreaterThan(down2);
    expect(await ask('s5')).toBe(back);
  });
});
