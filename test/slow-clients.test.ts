import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { connect, type Socket } from 'node:net';
import { request } from 'undici';
import { TokenService } from '../src/services/auth.js';
import { GqlClient, preparedIsolation, REDIS_URL, type TestServer } from './support/harness.js';
import { createSale } from './support/fixtures.js';
import { firstSseEvent, STOCK_CHANGED } from './support/live.js';
import { PURCHASE } from './support/operations.js';
import { spawnApi, type ApiProcess } from './support/processes.js';

/**
 * Issue 17 a and 4, on real processes (`node dist/main.js`): clients that open connections and
 * stall (mid-headers, mid-body, or silent) do not count as work in flight, so they cannot get
 * honest purchases shed, and the request timeouts close them; every GraphQL request, SSE
 * included, is counted and shed alike; one address may hold only so many connections.
 */
const JWT_SECRET = 'slow-clients-secret';
const tokens = new TokenService(JWT_SECRET);
const REQUEST_TIMEOUT_MS = 3000;
const HEADERS_TIMEOUT_MS = 1500;
const MAX_IN_FLIGHT = 300;

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

async function world(label: string) {
  const iso = await preparedIsolation(label, cleanups);
  return {
    ...iso,
    env: (overrides: Record<string, string>) => ({
      DATABASE_URL: iso.databaseUrl, REDIS_URL, REDIS_PREFIX: iso.redisPrefix, SEED_SAMPLE_SALE: 'false', LOG_LEVEL: 'warn',
      RATE_LIMIT_ENABLED: 'false', LOAD_SHED_EVENT_LOOP_P99_MS: '0', JWT_SECRET, ...overrides,
    }),
  };
}

interface Api extends ApiProcess {
  client: GqlClient;
  admin: string;
}

async function api(env: Record<string, string>): Promise<Api> {
  const p = await spawnApi(env);
  const client = new GqlClient(p.url, 16);
  cleanups.push(async () => {
    await client.close().catch(() => undefined);
    await p.stop();
  });
  return Object.assign(p, { client, admin: (await tokens.sign('slow-admin', 'admin')).token });
}

const via = (a: Api) => ({ client: a.client, admin: a.admin }) as unknown as TestServer;
const customer = async (name: string) => (await tokens.sign(name, 'customer')).token;
const purchaseBody = (itemId: string, key: string) => JSON.stringify({ query: PURCHASE, variables: { input: { saleItemId: itemId, quantity: 1, idempotencyKey: key } } });

async function inFlight(a: Api): Promise<number> {
  const text = await (await request(`${a.url}/metrics`)).body.text();
  const m = /^flashsale_graphql_in_flight (\S+)$/m.exec(text);
  if (!m) throw new Error('no flashsale_graphql_in_flight in /metrics');
  return Number(m[1]);
}

/** A raw connection that sends `head` (if any) and then nothing; records what it is answered and when it is closed. */
class Stalled {
  readonly socket: Socket;
  readonly opened = Date.now();
  answer = '';
  closedAt: number | null = null;
  readonly connected: Promise<void>;
  readonly closed: Promise<void>;

  constructor(port: number, head: string | null, localAddress?: string) {
    this.socket = connect({ port, host: '127.0.0.1', localAddress });
    this.socket.on('error', () => undefined);
    this.socket.on('data', (d) => (this.answer += d.toString()));
    this.connected = new Promise((resolve) => this.socket.once('connect', () => {
      if (head !== null) this.socket.write(head);
      resolve();
    }));
    this.closed = new Promise((resolve) => this.socket.once('close', () => {
      this.closedAt = Date.now();
      resolve();
    }));
  }

  /** Headers and the first byte of a purchase whose Content-Length promises many more. */
  static body(port: number, token: string, accept: string): Stalled {
    return new Stalled(port, `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: ${accept}\r\nAuthorization: Bearer ${token}\r\nContent-Length: 400\r\n\r\n{`);
  }
}

async function buyJson(a: Api, token: string, itemId: string, key: string, signal?: AbortSignal) {
  const res = await request(`${a.url}/graphql`, {
    method: 'POST', body: purchaseBody(itemId, key), signal,
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', authorization: `Bearer ${token}` },
  });
  return JSON.parse(await res.body.text()).data?.purchase;
}

async function buySse(a: Api, token: string, itemId: string, key: string) {
  return (await firstSseEvent(a.url, PURCHASE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: key } }, token)).data?.purchase;
}

const within = <T>(ms: number, p: Promise<T>, what: string) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms))]);

let slow: Api;
let shed: Api & { databaseUrl: string };
let capped: Api;
beforeAll(async () => {
  const [w1, w2, w3] = await Promise.all([world('slowclients'), world('slowshed'), world('slowcap')]);
  let shedApi: Api;
  [slow, shedApi, capped] = await Promise.all([
    // The default per-address limit (2048) leaves room for the stalled crowd, all from 127.0.0.1.
    api(w1.env({ LOAD_SHED_MAX_IN_FLIGHT: String(MAX_IN_FLIGHT), HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS), HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS) })),
    api(w2.env({ LOAD_SHED_MAX_IN_FLIGHT: '3', LOAD_SHED_RETRY_AFTER_SECONDS: '1' })),
    api(w3.env({ HTTP_MAX_CONNECTIONS_PER_ADDRESS: '20' })),
  ]);
  shed = Object.assign(shedApi, { databaseUrl: w2.databaseUrl });
});

describe('clients that stall', () => {
  it('do not count as in flight, so honest purchases (JSON and SSE) still go through; the timeouts close them', async () => {
    const { itemIds: [itemId] } = await createSale(via(slow), { stock: 50 });
    const stallToken = await customer('staller');
    // More stalled bodies than the in-flight limit, some of them wanting SSE; a few clients
    // trickling their headers, and a few saying nothing at all.
    const bodies = [
      ...Array.from({ length: MAX_IN_FLIGHT + 40 }, () => Stalled.body(slow.port, stallToken, 'application/json')),
      ...Array.from({ length: 40 }, () => Stalled.body(slow.port, stallToken, 'text/event-stream')),
    ];
    const heads = Array.from({ length: 10 }, () => new Stalled(slow.port, 'POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl'));
    const silent = Array.from({ length: 10 }, () => new Stalled(slow.port, null));
    const all = [...bodies, ...heads, ...silent];
    await Promise.all(all.map((s) => s.connected));
    await new Promise((r) => setTimeout(r, 500));
    let failure: unknown = null;
    try {
      expect(all.every((s) => s.closedAt === null)).toBe(true);
      const token = await customer('honest');
      const started = Date.now();
      expect(await within(3000, buyJson(slow, token, itemId, 'honest-json'), 'JSON purchase')).toMatchObject({ __typename: 'PurchaseSuccess' });
      expect(await within(3000, buySse(slow, token, itemId, 'honest-sse'), 'SSE purchase')).toMatchObject({ __typename: 'PurchaseSuccess' });
      expect(Date.now() - started).toBeLessThan(2000);
      expect(await inFlight(slow)).toBe(0);
    } catch (err) {
      failure = err;
    }
    // Whatever happened above, the stalled ones are to be closed by the server, not by us.
    const closedByServer = await within(REQUEST_TIMEOUT_MS + 4000, Promise.all(all.map((s) => s.closed)), 'stalled connections closed').then(() => true, () => false);
    if (!closedByServer) for (const s of all) s.socket.destroy();
    if (failure) throw failure;
    expect(closedByServer).toBe(true);
    // Stalled bodies: closed by the request (body) timeout with 408; headers and silence by the headers timeout.
    for (const s of bodies) {
      expect(s.answer).toMatch(/^HTTP\/1\.1 408 /);
      expect(s.closedAt! - s.opened).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 200);
      expect(s.closedAt! - s.opened).toBeLessThan(REQUEST_TIMEOUT_MS + 2500);
    }
    for (const s of [...heads, ...silent]) {
      expect(s.closedAt! - s.opened).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 200);
      expect(s.closedAt! - s.opened).toBeLessThan(HEADERS_TIMEOUT_MS + 2500);
    }
    expect(await inFlight(slow)).toBe(0);
  });
});

describe('SSE', () => {
  it('purchases with Accept: text/event-stream are counted and shed like any other; an open subscription is not work in flight', async () => {
    const { saleId, itemIds: [itemId] } = await createSale(via(shed), { stock: 20, perUserLimit: 5 });
    const token = await customer('sse-buyer');

    // A subscription over SSE stays open; once subscribed it no longer counts.
    const sub = await request(`${shed.url}/graphql`, {
      method: 'POST', body: JSON.stringify({ query: STOCK_CHANGED, variables: { saleId } }),
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    });
    const events = sub.body[Symbol.asyncIterator]();
    await within(3000, (async () => {
      while (!String((await events.next()).value ?? '').includes('stockChanged'));
    })(), 'first SSE event');
    expect(await inFlight(shed)).toBe(0);

    // The orders table is locked: these purchases reserve in Redis and then wait for their order
    // to commit, two of them over SSE: three requests in flight, the limit (3) reached.
    const lock = new pg.Client({ connectionString: shed.databaseUrl });
    await lock.connect();
    await lock.query('BEGIN');
    await lock.query('LOCK TABLE orders IN ACCESS EXCLUSIVE MODE');
    const waiting = Array.from({ length: 3 }, async (_, i) => {
      const t = await customer(`waiting-${i}`);
      return i < 2 ? buySse(shed, t, itemId, `waiting-${i}`) : buyJson(shed, t, itemId, `waiting-${i}`);
    });
    try {
      const deadline = Date.now() + 3000;
      while ((await inFlight(shed)) < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(await inFlight(shed)).toBe(3);
      // A fourth would take the process over its limit: shed at once, whichever way its answer is wanted.
      expect(await within(2000, buySse(shed, token, itemId, 'busy-sse'), 'SSE purchase while saturated')).toMatchObject({ __typename: 'Rejected', code: 'TEMPORARILY_UNAVAILABLE', retryAfterSeconds: 1 });
      expect(await within(2000, buyJson(shed, token, itemId, 'busy-json'), 'JSON purchase while saturated')).toMatchObject({ __typename: 'Rejected', code: 'TEMPORARILY_UNAVAILABLE', retryAfterSeconds: 1 });
    } finally {
      await lock.query('ROLLBACK');
      await lock.end();
    }
    for (const outcome of await within(15_000, Promise.all(waiting), 'the waiting purchases')) expect(outcome.__typename).toBe('PurchaseSuccess');
    expect(await inFlight(shed)).toBe(0);
    expect(await within(3000, buySse(shed, token, itemId, 'calm-sse'), 'SSE purchase')).toMatchObject({ __typename: 'PurchaseSuccess' });
    sub.body.destroy();
  });
});

describe('connections per address', () => {
  it('closes the connection over the limit at once; other addresses are not affected; a freed slot is reused', async () => {
    // Some connections from 127.0.0.1 may be open already (spawnApi's readiness probe keeps one alive).
    const tried = Array.from({ length: 25 }, () => new Stalled(capped.port, null));
    await Promise.all(tried.map((s) => s.connected));
    await new Promise((r) => setTimeout(r, 300));
    const opened = tried.filter((s) => s.closedAt === null);
    const refused = tried.filter((s) => s.closedAt !== null);
    expect(opened.length).toBeGreaterThanOrEqual(17);
    expect(opened.length).toBeLessThanOrEqual(20);
    // Closed as soon as accepted: no answer, well before any timeout.
    for (const s of refused) {
      expect(s.answer).toBe('');
      expect(s.closedAt! - s.opened).toBeLessThan(300);
    }

    const health = (localAddress?: string) => new Promise<string>((resolve) => {
      const s = new Stalled(capped.port, 'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n', localAddress);
      void s.closed.then(() => resolve(s.answer));
    });
    // The 21st from 127.0.0.1 is closed unanswered, the loopback counting like any address.
    expect(await within(2000, health(), 'over the limit')).toBe('');
    // 127.0.0.2 is another address (the whole 127/8 reaches the loopback on Linux).
    expect(await within(2000, health('127.0.0.2'), 'another address')).toMatch(/^HTTP\/1\.1 200 /);
    opened[0].socket.destroy();
    await opened[0].closed;
    await new Promise((r) => setTimeout(r, 100));
    expect(await within(2000, health(), 'a freed slot')).toMatch(/^HTTP\/1\.1 200 /);
    for (const s of tried) s.socket.destroy();

    const metrics = await (await request(`${capped.url}/metrics`)).body.text();
    expect(metrics).toMatch(/^flashsale_connections_refused_total [1-9]/m);
  });
});
