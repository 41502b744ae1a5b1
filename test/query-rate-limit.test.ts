import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { queryRateLimitsFromConfig, WindowCounterStore } from '../src/server/query-rate-limit.js';
import type { RedisClient } from '../src/redis.js';
import type { RateCounter } from '../src/services/rate-counter.js';
import { createSale } from './support/fixtures.js';
import { eventually, GqlClient, isolation, startInstancePair, startTestServer, type InstancePair, type TestServer } from './support/harness.js';
import { firstSseEvent, LiveClients, Recorder, RESERVATION_CHANGED, SALE_STATUS_CHANGED, STOCK_CHANGED, type StockUpdate } from './support/live.js';
import { PURCHASE, SALE } from './support/operations.js';

/**
 * Issue 17 j: queries and subscriptions started are limited per client (customer id, else
 * address) with @envelop/rate-limiter, counted in Redis and shared by every instance.
 * Windows are aligned to the clock (one minute here): each burst starts clear of a window's end.
 */
const WINDOW_MS = 60_000;
const WINDOW = '60s';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  data: any;
  errors?: { message: string; path?: (string | number)[]; extensions?: Record<string, any> }[];
}

/** A POST (the fast lane) as a client at `ip` (TRUST_PROXY_HOPS=1: the proxy's X-Forwarded-For entry) with an optional token. */
async function post(client: GqlClient, query: string, who: { ip?: string; token?: string } = {}, variables: Record<string, unknown> = {}, operationName?: string): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (who.ip) headers['x-forwarded-for'] = who.ip;
  if (who.token) headers.authorization = `Bearer ${who.token}`;
  const res = await request(`${client.url}/graphql`, {
    method: 'POST', dispatcher: client.agent, body: JSON.stringify({ query, variables, operationName }),
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', ...headers },
  });
  const body = JSON.parse(await res.body.text());
  return { status: res.statusCode, headers: res.headers, data: body.data, errors: body.errors };
}

const code = (r: Answer) => r.errors?.[0]?.extensions?.code ?? 'OK';
const codes = (rs: Answer[]) => rs.map(code).sort();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits for the next window if the current one ends within `needMs`, so a burst is counted in one window. */
async function clearOfWindowEnd(needMs = 8000): Promise<void> {
  const left = WINDOW_MS - (Date.now() % WINDOW_MS);
  if (left < needMs) await sleep(left + 50);
}

/** RATE_LIMITED as the contract says: HTTP 200, data null, an integer retryAfterSeconds within the window, and Retry-After. */
function expectLimited(r: Answer, path?: string[]) {
  expect(r.status).toBe(200);
  expect(r.data).toBeNull();
  expect(r.errors?.length).toBeGreaterThan(0);
  for (const e of r.errors!) {
    expect(e.extensions?.code).toBe('RATE_LIMITED');
    const s = e.extensions!.retryAfterSeconds;
    expect(Number.isInteger(s)).toBe(true);
    expect(s).toBeGreaterThanOrEqual(1);
    expect(s).toBeLessThanOrEqual(WINDOW_MS / 1000);
    expect(e.extensions?.http).toBeUndefined();
  }
  expect(Number(r.headers['retry-after'])).toBe(r.errors![0].extensions!.retryAfterSeconds);
  if (path) expect(r.errors![0].path).toEqual(path);
}

describe('queries per client over HTTP', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer('qrl-http', {
      TRUST_PROXY_HOPS: '1',
      RATE_LIMIT_QUERY_PER_IP: `5/${WINDOW}`,
      RATE_LIMIT_QUERY_PER_CUSTOMER: `8/${WINDOW}`,
    });
  });
  afterAll(() => t?.close());

  it('an anonymous address over its limit gets RATE_LIMITED with retryAfterSeconds; another address and a customer at the same address are unaffected', async () => {
    await clearOfWindowEnd();
    const greedy = await Promise.all(Array.from({ length: 9 }, () => post(t.client, '{ serverTime }', { ip: '203.0.113.7' })));
    expect(codes(greedy).filter((c) => c === 'OK')).toHaveLength(5);
    const limited = greedy.filter((r) => code(r) === 'RATE_LIMITED');
    expect(limited).toHaveLength(4);
    for (const r of limited) expectLimited(r, ['serverTime']);
    // Refused calls count too: the address stays refused, whatever it asks.
    expectLimited(await post(t.client, '{ sales(first: 1) { edges { node { id } } } }', { ip: '203.0.113.7' }));

    // Another address, and a customer behind the same one, have budgets of their own.
    const other = await post(t.client, '{ serverTime }', { ip: '198.51.100.9' });
    expect(code(other)).toBe('OK');
    expect(other.data.serverTime).toBeTruthy();
    const customer = await post(t.client, '{ me { id } }', { ip: '203.0.113.7', token: await t.token('browser-1') });
    expect(code(customer)).toBe('OK');
    expect(customer.data.me.id).toBe('browser-1');
  });

  it('a customer is counted by id, whatever address it comes from; another customer is unaffected', async () => {
    await clearOfWindowEnd();
    const token = await t.token('scraper');
    const rs = await Promise.all(Array.from({ length: 12 }, (_, i) => post(t.client, '{ me { id } }', { ip: `192.0.2.${i + 1}`, token })));
    expect(codes(rs).filter((c) => c === 'OK')).toHaveLength(8);
    for (const r of rs.filter((r) => code(r) === 'RATE_LIMITED')) expectLimited(r, ['me']);
    expect(code(await post(t.client, '{ me { id } }', { ip: '192.0.2.200', token: await t.token('patient') }))).toBe('OK');
  });

  it('every root field counts (aliases, fragments on Query), nested ones do not; only the operation executed counts; a refused field stops the operation', async () => {
    await clearOfWindowEnd();
    const ip = '203.0.113.50';
    // 3 of 5.
    const first = await post(t.client, '{ a: serverTime ... on Query { b: serverTime } ...C } fragment C on Query { c: serverTime }', { ip });
    expect(code(first)).toBe('OK');
    expect(Object.keys(first.data).sort()).toEqual(['a', 'b', 'c']);
    // 4 of 5: one root field, however deep its selection.
    const deep = await post(t.client, '{ sales(first: 5) { edges { node { id name items { id available product { id name } } } } } }', { ip });
    expect(code(deep)).toBe('OK');
    // 5 and 6 of 5 (the document's other operation is not executed, nor counted): one field refused, nothing runs.
    const third = await post(t.client, 'query Two { x: serverTime y: serverTime } query Other { p: serverTime q: serverTime r: serverTime }', { ip }, {}, 'Two');
    expectLimited(third);
    expect(third.errors).toHaveLength(1);
    expect(['x', 'y']).toContain(third.errors![0].path![0]);
  });

  it("Yoga's full path (GET) and SSE are limited like the fast lane; mutations are not counted", async () => {
    await clearOfWindowEnd();
    const ip = '203.0.113.80';
    const { itemIds } = await createSale(t, { stock: 10, perUserLimit: 5 });
    for (let i = 0; i < 5; i++) expect(code(await post(t.client, '{ serverTime }', { ip }))).toBe('OK');
    const get = await request(`${t.app.url}/graphql?query=${encodeURIComponent('{ serverTime }')}`, { headers: { 'x-forwarded-for': ip, accept: 'application/json' } });
    const getBody = JSON.parse(await get.body.text());
    expect(get.statusCode).toBe(200);
    expect(getBody.errors[0].extensions.code).toBe('RATE_LIMITED');
    // A query sent as SSE is counted as a query too.
    const sse = await request(`${t.app.url}/graphql`, {
      method: 'POST', body: JSON.stringify({ query: '{ serverTime }' }),
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'x-forwarded-for': ip },
    });
    expect(await sse.body.text()).toContain('RATE_LIMITED');
    // Buying is the buying limiter's business: a customer over the query budget still buys.
    const token = await t.token('buyer-over-query-budget');
    for (let i = 0; i < 8; i++) await post(t.client, '{ serverTime }', { token });
    expectLimited(await post(t.client, '{ serverTime }', { token }));
    const bought = await post(t.client, PURCHASE, { token }, { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: 'qrl-1' } });
    expect(bought.data.purchase.__typename).toBe('PurchaseSuccess');
  });

  it('admins are never limited', async () => {
    await clearOfWindowEnd();
    const rs = await Promise.all(Array.from({ length: 40 }, () => post(t.client, '{ serverTime }', { ip: '203.0.113.99', token: t.admin })));
    expect(codes(rs).every((c) => c === 'OK')).toBe(true);
  });

  it('anonymous reads answered by the response cache are not counted; misses are', async () => {
    await clearOfWindowEnd();
    const ip = '203.0.113.120';
    const { saleId } = await createSale(t, { stock: 3 });
    // Past the status watch's first look at the new sale, which may announce it (and drop its answers).
    await sleep(1000);
    // The first read is a miss (counted, and kept); the next 30 are hits, answered before Yoga runs.
    // Were hits counted, all but four of them would be refused.
    const reads = [];
    for (let i = 0; i < 31; i++) reads.push(await post(t.client, SALE, { ip }, { id: saleId }));
    expect(reads.every((r) => code(r) === 'OK' && r.data.sale.id === saleId)).toBe(true);
    // What the misses left (four, unless an answer expired meanwhile) goes to queries the cache does not answer.
    let allowed = 0;
    for (let i = 0; i < 10; i++) {
      const r = await post(t.client, '{ serverTime }', { ip });
      if (code(r) !== 'OK') {
        expectLimited(r);
        break;
      }
      allowed++;
    }
    expect(allowed).toBeGreaterThanOrEqual(2);
    expect(allowed).toBeLessThanOrEqual(4);
  });
});

describe('two instances share the count', () => {
  let pair: InstancePair;
  beforeAll(async () => {
    pair = await startInstancePair(isolation('qrl-pair'), { TRUST_PROXY_HOPS: '1', RATE_LIMIT_QUERY_PER_IP: `10/${WINDOW}`, RATE_LIMIT_QUERY_PER_CUSTOMER: `6/${WINDOW}` });
  });
  afterAll(() => pair?.close());

  it('one address spreading its queries over both instances gets the limit once, not twice', async () => {
    await clearOfWindowEnd();
    const ip = '203.0.113.200';
    const rs = await Promise.all(Array.from({ length: 16 }, (_, i) => post(i % 2 ? pair.onB : pair.onA, '{ serverTime }', { ip })));
    expect(codes(rs).filter((c) => c === 'OK')).toHaveLength(10);
    for (const r of rs.filter((r) => code(r) === 'RATE_LIMITED')) expectLimited(r);
    // Whichever instance it asks next.
    expectLimited(await post(pair.onA, '{ serverTime }', { ip }));
    expectLimited(await post(pair.onB, '{ serverTime }', { ip }));
    // A customer too: six on A, then B refuses the seventh.
    const token = await pair.t.token('two-instances');
    for (let i = 0; i < 6; i++) expect(code(await post(pair.onA, '{ me { id } }', { token }))).toBe('OK');
    expectLimited(await post(pair.onB, '{ me { id } }', { token }));
  });
});

describe('subscriptions started per client', () => {
  let t: TestServer;
  const clients = new LiveClients(() => t.app.url);
  beforeAll(async () => {
    t = await startTestServer('qrl-subs', {
      RATE_LIMIT_SUBSCRIBE_PER_IP: `4/${WINDOW}`,
      RATE_LIMIT_SUBSCRIBE_PER_CUSTOMER: `2/${WINDOW}`,
      RATE_LIMIT_QUERY_PER_IP: `1000/${WINDOW}`,
    });
  });
  afterAll(async () => {
    await clients.disposeAll();
    await t?.close();
  });

  it('a graphql-ws client past the limit gets RATE_LIMITED on the extra subscribes (shared and regular way) while its earlier subscriptions keep delivering', async () => {
    await clearOfWindowEnd(15_000);
    const { saleId, itemIds } = await createSale(t, { stock: 10 });
    const ws = clients.open();
    // 1: stockChanged's text is new on this instance, served the regular way (Yoga's plugins), then shareable.
    const stock1 = new Recorder<{ stockChanged: StockUpdate }>(ws, STOCK_CHANGED, { saleId });
    await stock1.waitFor(() => true);
    // 2, 3: served the shared way (no Yoga), counted by the same limiter.
    const stock2 = new Recorder<{ stockChanged: StockUpdate }>(ws, STOCK_CHANGED, { saleId });
    const status1 = new Recorder(ws, SALE_STATUS_CHANGED, { saleId });
    await stock2.waitFor(() => true);
    await status1.waitFor(() => true);
    const status2 = new Recorder(ws, SALE_STATUS_CHANGED, { saleId });
    await status2.waitFor(() => true);

    // 5: a known shareable text (the shared way) is refused.
    const extraShared = new Recorder(ws, STOCK_CHANGED, { saleId });
    const refusedShared = await extraShared.refusal();
    // 6: a text never seen (the regular way, through Yoga) is refused too.
    const extraRegular = new Recorder(ws, `subscription Other($saleId: ID!) { stockChanged(saleId: $saleId) { saleId version } }`, { saleId });
    const refusedRegular = await extraRegular.refusal();
    for (const refused of [refusedShared, refusedRegular]) {
      expect(refused[0].extensions?.code).toBe('RATE_LIMITED');
      expect(refused[0].extensions?.retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(refused[0].extensions?.retryAfterSeconds).toBeLessThanOrEqual(WINDOW_MS / 1000);
      expect(refused[0].extensions?.http).toBeUndefined();
    }
    await eventually(async () => extraShared.completed && extraRegular.completed);
    expect(extraShared.data).toEqual([]);
    expect(extraRegular.data).toEqual([]);

    // SSE from the same address: refused as well.
    const sse = await firstSseEvent(t.app.url, STOCK_CHANGED, { saleId });
    expect(sse.data ?? null).toBeNull();
    expect(sse.errors[0].extensions.code).toBe('RATE_LIMITED');
    expect(sse.errors[0].extensions.retryAfterSeconds).toBeGreaterThanOrEqual(1);

    // The socket and its four subscriptions live on: a purchase reaches every one of them.
    const bought = await post(t.client, PURCHASE, { token: await t.token('sub-buyer') }, { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: 'sub-1' } });
    expect(bought.data.purchase.__typename).toBe('PurchaseSuccess');
    for (const sub of [stock1, stock2]) await sub.waitFor((d) => d.stockChanged.items[0].sold === 1);
    for (const sub of [stock1, stock2, status1, status2]) {
      expect(sub.error).toBeNull();
      expect(sub.completed).toBe(false);
    }
    expect(ws.closes).toEqual([]);
  });

  it('a shared subscribe with variables its field refuses is answered by the regular way, not left hanging', async () => {
    const ws = clients.open(await t.token('sub-bad-variables'));
    const bad = new Recorder(ws, STOCK_CHANGED, {});
    const refused = await bad.refusal();
    expect(refused[0].extensions?.code).not.toBe('RATE_LIMITED');
    expect(refused[0].message).toMatch(/saleId/);
  });

  it('a customer has a budget of its own (by id), viewer streams included; admins are never limited', async () => {
    await clearOfWindowEnd(15_000);
    const { saleId } = await createSale(t, { stock: 10 });
    const token = await t.token('sub-customer');
    const ws = clients.open(token);
    const a = new Recorder(ws, STOCK_CHANGED, { saleId });
    const b = new Recorder(ws, RESERVATION_CHANGED, { saleId });
    await a.waitFor(() => true);
    await sleep(300);
    expect(b.error).toBeNull();
    const c = new Recorder(ws, RESERVATION_CHANGED, { saleId });
    expect((await c.refusal())[0].extensions?.code).toBe('RATE_LIMITED');
    // The same customer on another socket: still counted by id.
    const d = new Recorder(clients.open(token), STOCK_CHANGED, { saleId });
    expect((await d.refusal())[0].extensions?.code).toBe('RATE_LIMITED');
    // Another customer is unaffected.
    const other = new Recorder(clients.open(await t.token('sub-other')), STOCK_CHANGED, { saleId });
    await other.waitFor(() => true);

    const admin = clients.open(t.admin);
    const adminSubs = Array.from({ length: 10 }, () => new Recorder(admin, STOCK_CHANGED, { saleId }));
    for (const s of adminSubs) await s.waitFor(() => true);
    expect(adminSubs.every((s) => s.error === null)).toBe(true);
  });
});

describe('configuration', () => {
  const base = { RATE_LIMIT_QUERY_PER_IP: '5/60s', RATE_LIMIT_QUERY_PER_CUSTOMER: '6/60s', RATE_LIMIT_SUBSCRIBE_PER_IP: '7/60s', RATE_LIMIT_SUBSCRIBE_PER_CUSTOMER: '8/60s' };

  it('has generous defaults, "off" lifts one limit, RATE_LIMIT_ENABLED=false lifts them all', () => {
    const defaults = parseConfig({});
    expect(defaults.RATE_LIMIT_QUERY_PER_CUSTOMER).toEqual({ max: 500, windowMs: 10_000 });
    expect(defaults.RATE_LIMIT_QUERY_PER_IP).toEqual({ max: 1000, windowMs: 10_000 });
    expect(defaults.RATE_LIMIT_SUBSCRIBE_PER_CUSTOMER).toEqual({ max: 50, windowMs: 10_000 });
    expect(defaults.RATE_LIMIT_SUBSCRIBE_PER_IP).toEqual({ max: 200, windowMs: 10_000 });
    expect(queryRateLimitsFromConfig(parseConfig(base)).map((l) => `${l.bucket}:${l.by}:${l.rule.max}`)).toEqual(['query:customer:6', 'query:ip:5', 'subscribe:customer:8', 'subscribe:ip:7']);
    expect(queryRateLimitsFromConfig(parseConfig({ ...base, RATE_LIMIT_QUERY_PER_IP: 'off' })).map((l) => `${l.bucket}:${l.by}`)).toEqual(['query:customer', 'subscribe:customer', 'subscribe:ip']);
    expect(queryRateLimitsFromConfig(parseConfig({ ...base, RATE_LIMIT_ENABLED: 'false' }))).toEqual([]);
    expect(() => parseConfig({ RATE_LIMIT_QUERY_PER_IP: 'lots' })).toThrow(/RATE_LIMIT_QUERY_PER_IP/);
  });

  it('RATE_LIMIT_ENABLED=false: no query or subscription limit', async () => {
    const t = await startTestServer('qrl-off', { RATE_LIMIT_ENABLED: 'false', RATE_LIMIT_QUERY_PER_IP: '2/60s', RATE_LIMIT_SUBSCRIBE_PER_IP: '1/60s' });
    const clients = new LiveClients(() => t.app.url);
    try {
      const rs = await Promise.all(Array.from({ length: 10 }, () => post(t.client, '{ serverTime }')));
      expect(codes(rs).every((c) => c === 'OK')).toBe(true);
      const { saleId } = await createSale(t, { stock: 1 });
      const ws = clients.open();
      const subs = Array.from({ length: 3 }, () => new Recorder(ws, STOCK_CHANGED, { saleId }));
      for (const s of subs) await s.waitFor(() => true);
    } finally {
      await clients.disposeAll();
      await t.close();
    }
  });

  it('the store lets calls through while Redis is not connected', async () => {
    const counter = { check: () => ({}), hit: () => Promise.reject(new Error('must not be called')) } as unknown as RateCounter;
    const store = new WindowCounterStore(counter, { status: 'reconnecting' } as unknown as RedisClient, 'query:ip', { max: 1, windowMs: 1000 }, createLogger('silent'));
    expect(await store.getForIdentity({ contextIdentity: 'ip:1.2.3.4', fieldIdentity: 'serverTime' })).toEqual([]);
  });
});
