import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getIntrospectionQuery } from 'graphql';
import pg from 'pg';
import { Readable } from 'node:stream';
import { request } from 'undici';
import * as loadOperations from '../load/harness/operations.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { wsClient } from './support/live.js';
import { createSale } from './support/fixtures.js';
import * as operations from './support/operations.js';
import { PURCHASE, SALE_ITEM } from './support/operations.js';

const codeOf = (body: string) => JSON.parse(body).errors?.[0]?.extensions?.code;
const STACK = /\bat .*\.(ts|js|mjs|cjs):\d+/;

let dev: TestServer;
let prod: TestServer;
beforeAll(async () => {
  [dev, prod] = await Promise.all([
    startTestServer('harddev'),
    // Production defaults (no explicit INTROSPECTION, GRAPHIQL), with an origin list and small batches allowed.
    startTestServer('hardprod', {
      NODE_ENV: 'production', JWT_SECRET: 'a-production-secret-for-the-hardening-tests', DATA_KEY: Buffer.alloc(32, 9).toString('base64'),
      CORS_ORIGINS: 'https://shop.example, https://m.shop.example', GRAPHQL_BATCH_LIMIT: '2', HSTS_MAX_AGE_SECONDS: '31536000',
    }),
  ]);
});
afterAll(async () => {
  await Promise.all([dev?.close(), prod?.close()]);
});

async function post(t: TestServer, body: string | AsyncIterable<Buffer>, headers: Record<string, string> = {}) {
  const res = await request(`${t.app.url}/graphql`, {
    method: 'POST', body: typeof body === 'string' ? body : Readable.from(body), headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', ...headers },
  });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}
const query = (q: string, variables?: Record<string, unknown>) => JSON.stringify({ query: q, variables });

describe('document limits (graphql-armor)', () => {
  it("leaves the contract's own operations and GraphiQL's introspection inside the limits", async () => {
    const documents = ([...Object.values(operations), ...Object.values(loadOperations)] as unknown[]).filter((d): d is string => typeof d === 'string');
    documents.push(
      `query { sales(first: 100) { edges { cursor node { id name startsAt endsAt status perUserLimit holdSeconds waitingRoom admitPerSecond currency available soldOutAt
        items { id priceCents initialStock available reserved sold product { id sku name description priceCents currency imageUrl } sale { id status } } } } pageInfo { hasNextPage endCursor } } }`,
      `query { me { id orders(first: 100) { edges { node { id customerId quantity unitPriceCents totalCents status paymentMethod idempotencyKey createdAt
        delivery { name phone addressLine1 addressLine2 city postalCode country } saleItem { id sale { id name } product { name } } } } pageInfo { hasNextPage } }
        reservations { id quantity status createdAt expiresAt endReason fromWaitlist order { id } saleItem { id product { name } } }
        waitlist { id quantity position status joinedAt offer { id expiresAt } saleItem { id available } } } }`,
      `query($id: ID!) { saleSummary(saleId: $id) { sale { id } unitsSold orders uniqueBuyers revenueCents attempts rejections { code count } reservationsExpired waitlistSize soldOutAt sellOutSeconds } }`,
      getIntrospectionQuery(),
    );
    for (const doc of documents) {
      const r = await post(dev, query(doc), { authorization: `Bearer ${dev.admin}` });
      expect(r.status, doc).toBeLessThan(500);
      expect(r.body, doc).not.toMatch(/limit of \d+ exceeded|Query validation error/);
    }
  });

  const refused: [string, string][] = [
    ['too deep', `query($id: ID!) { sale(id: $id) { items { sale { items { sale { items { sale { items { sale { items { sale { items { sale { id } } } } } } } } } } } } }`],
    ['too many aliases', `{ ${Array.from({ length: 31 }, (_, i) => `a${i}: serverTime`).join(' ')} }`],
    ['too many directives', `{ serverTime ${'@include(if: true) '.repeat(51)} }`],
    ['too many tokens', `{ ${'serverTime '.repeat(2001)} }`],
    ['too costly', `{ ${Array.from({ length: 25 }, (_, i) => `s${i}: sales(first: 100) { edges { node { items { product { id sku name priceCents } available reserved sold } } } }`).join(' ')} }`],
  ];
  for (const [what, doc] of refused) {
    it(`refuses a document ${what}: a coded error, never a 5xx`, async () => {
      const r = await post(dev, query(doc, { id: 'x' }));
      expect(r.status).toBeGreaterThanOrEqual(200);
      expect(r.status).toBeLessThan(500);
      expect(codeOf(r.body)).toMatch(/^(BAD_USER_INPUT|GRAPHQL_VALIDATION_FAILED|GRAPHQL_PARSE_FAILED)$/);
      expect(JSON.parse(r.body).data ?? null).toBeNull();
      expect(r.body).not.toMatch(STACK);
    });
  }

  it('refuses fragment cycles and deep fragment chains', async () => {
    const cycle = await post(dev, query(`{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }`));
    expect(cycle.status).toBeLessThan(500);
    expect(codeOf(cycle.body)).toBeTruthy();
  });
});

describe('request size and shape', () => {
  it('answers 413 to a body over 100 KB, whether Content-Length says so or it arrives chunked', async () => {
    const big = await post(dev, query('{ serverTime }', { pad: 'x'.repeat(120_000) }));
    expect(big.status).toBe(413);
    expect(codeOf(big.body)).toBe('PAYLOAD_TOO_LARGE');
    async function* chunks() {
      for (let i = 0; i < 200; i++) yield Buffer.from(' '.repeat(1000));
    }
    const chunked = await post(dev, chunks());
    expect(chunked.status).toBe(413);
    async function* small() {
      yield Buffer.from(query('{ serverTime }'));
    }
    const fine = await post(dev, small());
    expect(fine.status).toBe(200);
    expect(JSON.parse(fine.body).data.serverTime).toBeTruthy();
  });

  it('refuses batches by default, with a 4xx', async () => {
    const r = await post(dev, JSON.stringify([{ query: '{ serverTime }' }, { query: '{ serverTime }' }]));
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
    expect(codeOf(r.body)).toBeTruthy();
  });

  it('accepts batches up to GRAPHQL_BATCH_LIMIT when configured, and refuses larger ones', async () => {
    const two = await post(prod, JSON.stringify([{ query: '{ serverTime }' }, { query: '{ serverTime }' }]));
    expect(two.status).toBe(200);
    expect(JSON.parse(two.body)).toHaveLength(2);
    const three = await post(prod, JSON.stringify([{ query: '{ serverTime }' }, { query: '{ serverTime }' }, { query: '{ serverTime }' }]));
    expect(three.status).toBeGreaterThanOrEqual(400);
    expect(three.status).toBeLessThan(500);
  });

  it('answers wrong methods and content types with a 4xx', async () => {
    const put = await request(`${dev.app.url}/graphql`, { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json' } });
    expect(put.statusCode).toBe(405);
    await put.body.text();
    const text = await post(dev, 'hello', { 'content-type': 'text/plain' });
    expect(text.status).toBeGreaterThanOrEqual(400);
    expect(text.status).toBeLessThan(500);
  });
});

describe('text PostgreSQL cannot store', () => {
  it('refuses NUL characters in variables and literals with BAD_USER_INPUT, not an unexpected error', async () => {
    const customer = await dev.token('nul-sender');
    const cases: [string, Record<string, unknown>][] = [
      ['query($id: ID!) { sale(id: $id) { id } }', { id: 'a\u0000b' }],
      ['query($s: String) { products(search: $s) { edges { cursor } } }', { s: '\u0000' }],
      ['mutation($i: PurchaseInput!) { purchase(input: $i) { __typename } }', { i: { saleItemId: 's.i', idempotencyKey: 'k\u0000' } }],
      ['{ product(id: "\\u0000") { id } }', {}],
      ['subscription { queueChanged(saleId: "\\u0000") { status } }', {}],
    ];
    for (const [doc, variables] of cases) {
      const r = await post(dev, query(doc, variables), { authorization: `Bearer ${customer}` });
      expect(r.status, doc).toBeLessThan(500);
      expect(codeOf(r.body), doc).toBe('BAD_USER_INPUT');
    }
    // Variables nested thousands deep are scanned without recursion.
    const r = await post(dev, `{"query":"{ serverTime }","variables":{"deep":${'['.repeat(20_000)}"x"${']'.repeat(20_000)}}}`);
    expect(r.status).toBe(200);
  });
});

describe('introspection, GraphiQL and suggestions', () => {
  it('serves introspection and GraphiQL outside production', async () => {
    const r = await post(dev, query('{ __schema { queryType { name } } }'));
    expect(JSON.parse(r.body).data.__schema.queryType.name).toBe('Query');
    const page = await request(`${dev.app.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(page.statusCode).toBe(200);
    expect(await page.body.text()).toMatch(/graphiql/i);
  });

  it('refuses introspection, GraphiQL and field suggestions in production by default', async () => {
    for (const q of ['{ __schema { queryType { name } } }', '{ __type(name: "Query") { name } }']) {
      const r = await post(prod, query(q));
      expect(r.status).toBeLessThan(500);
      expect(codeOf(r.body)).toBe('GRAPHQL_VALIDATION_FAILED');
    }
    // __typename is not introspection: clients need it for unions.
    expect(JSON.parse((await post(prod, query('{ __typename }'))).body).data.__typename).toBe('Query');
    const suggestion = await post(prod, query('{ serverTim }'));
    expect(suggestion.body).not.toMatch(/Did you mean/);
    const page = await request(`${prod.app.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(await page.body.text()).not.toMatch(/graphiql/i);
  });
});

describe('CORS and security headers', () => {
  it('sets nosniff, a referrer policy and frame-ancestors on every answer', async () => {
    for (const path of ['/graphql?query=%7BserverTime%7D', '/health', '/ready', '/metrics']) {
      const res = await request(`${dev.app.url}${path}`);
      await res.body.text();
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['referrer-policy']).toBe('no-referrer');
      expect(res.headers['content-security-policy']).toBe("frame-ancestors 'none'");
      expect(res.headers['x-frame-options']).toBe('DENY');
    }
    const prodRes = await request(`${prod.app.url}/health`);
    await prodRes.body.text();
    expect(prodRes.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
  });

  it('allows only the configured origins', async () => {
    const allowed = await post(prod, query('{ serverTime }'), { origin: 'https://m.shop.example' });
    expect(allowed.headers['access-control-allow-origin']).toBe('https://m.shop.example');
    const other = await post(prod, query('{ serverTime }'), { origin: 'https://evil.example' });
    expect(other.headers['access-control-allow-origin']).not.toBe('https://evil.example');
    const preflight = await request(`${prod.app.url}/graphql`, {
      method: 'OPTIONS', headers: { origin: 'https://shop.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    await preflight.body.text();
    expect(preflight.statusCode).toBeLessThan(300);
    expect(preflight.headers['access-control-allow-origin']).toBe('https://shop.example');
    expect(preflight.headers['access-control-allow-credentials']).toBeUndefined();
  });
});

describe('load shedding', () => {
  let t: TestServer;
  beforeAll(async () => {
    // A tiny in-flight threshold: any burst saturates it.
    t = await startTestServer('hardshed', { RATE_LIMIT_ENABLED: 'false', LOAD_SHED_MAX_IN_FLIGHT: '2', LOAD_SHED_EVENT_LOOP_P99_MS: '0', LOAD_SHED_RETRY_AFTER_SECONDS: '1' });
  });
  afterAll(() => t?.close());

  it('answers a burst of purchases over the threshold with Rejected TEMPORARILY_UNAVAILABLE at once, and buys nothing for them', async () => {
    const { itemIds: [itemId] } = await createSale(t, { stock: 500 });
    const tokens = await Promise.all(Array.from({ length: 80 }, (_, i) => t.token(`shed-${i}`)));
    const results = await Promise.all(tokens.map((token, i) => t.client.gql(PURCHASE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: `shed-${i}` } }, token)));
    expect(results.every((r) => r.status === 200 && !r.errors)).toBe(true);
    const outcomes = results.map((r) => r.data.purchase);
    const shed = outcomes.filter((o) => o.__typename === 'Rejected');
    const bought = outcomes.filter((o) => o.__typename === 'PurchaseSuccess');
    expect(shed.length).toBeGreaterThan(0);
    expect(bought.length).toBeGreaterThan(0);
    for (const o of shed) expect(o).toMatchObject({ code: 'TEMPORARILY_UNAVAILABLE', retryAfterSeconds: 1 });
    const level = (await t.client.gql(SALE_ITEM, { id: itemId })).data.saleItem;
    expect(level).toMatchObject({ sold: bought.length, reserved: 0, available: 500 - bought.length });

    // One at a time nothing is shed, and the shed customers' retries go through.
    const retry = await t.client.gql(PURCHASE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: 'shed-retry' } }, tokens[outcomes.indexOf(shed[0])]);
    expect(retry.data.purchase.__typename).toBe('PurchaseSuccess');

    const metrics = await (await request(`${t.app.url}/metrics`)).body.text();
    expect(metrics).toMatch(/flashsale_load_shed_total\{reason="in-flight"\} [1-9]/);
  });

  it('sheds a purchase sent over a WebSocket while the process is saturated, and serves it after', async () => {
    const { itemIds: [itemId] } = await createSale(t, { stock: 10 });
    const token = await t.token('shed-ws');
    const ws = wsClient(t.app.url, token);
    const buyOverWs = (key: string) => new Promise<Record<string, unknown>>((resolve, reject) => {
      let data: Record<string, unknown> = {};
      ws.subscribe({ query: PURCHASE, variables: { input: { saleItemId: itemId, quantity: 1, idempotencyKey: key } } }, {
        next: (r) => (data = r.data?.purchase as Record<string, unknown>),
        error: reject,
        complete: () => resolve(data),
      });
    });
    // The connection opens while the process is idle; its upgrade request carries no verdict.
    expect(await buyOverWs('ws-before')).toMatchObject({ __typename: 'PurchaseSuccess' });
    // Three queries waiting on a locked orders table keep the process over its in-flight limit of 2
    // (a request whose body has not arrived would not: it is not work in flight).
    const lock = new pg.Client({ connectionString: t.app.config.DATABASE_URL });
    await lock.connect();
    await lock.query('BEGIN');
    await lock.query('LOCK TABLE orders IN ACCESS EXCLUSIVE MODE');
    let hanging: Promise<unknown>[] = [];
    try {
      hanging = Array.from({ length: 3 }, () => t.client.gql(`{ me { orders(first: 1) { edges { node { id } } } } }`, {}, token));
      await new Promise((r) => setTimeout(r, 200));
      expect(await buyOverWs('ws-busy')).toMatchObject({ __typename: 'Rejected', code: 'TEMPORARILY_UNAVAILABLE', retryAfterSeconds: 1 });
    } finally {
      await lock.query('ROLLBACK');
      await lock.end();
    }
    await Promise.all(hanging);
    expect(await buyOverWs('ws-after')).toMatchObject({ __typename: 'PurchaseSuccess' });
    await ws.dispose();
  });

  it('never sheds queries or admins; login answers a coded GraphQL error', async () => {
    const customer = await t.token('shed-reader');
    const calls = [
      ...Array.from({ length: 20 }, () => t.client.gql(`{ serverTime me { id } }`, {}, customer).then((r) => ['query', r] as const)),
      ...Array.from({ length: 5 }, (_, i) => t.client.gql(operations.CREATE_PRODUCT, { input: { sku: `SHED-${Date.now()}-${i}`, name: 'p', priceCents: 1, currency: 'USD' } }, t.admin).then((r) => ['admin', r] as const)),
      ...Array.from({ length: 20 }, (_, i) => t.client.gql(`mutation($e: String!) { login(email: $e, password: "wrong-password-1") { token } }`, { e: `nobody${i}@example.com` }).then((r) => ['login', r] as const)),
    ];
    const results = await Promise.all(calls);
    for (const [kind, r] of results) {
      expect(r.status).toBe(200);
      if (kind === 'query') expect(r.data.me.id).toBe('shed-reader');
      if (kind === 'admin') expect(r.data.createProduct.id).toBeTruthy();
      if (kind === 'login') {
        const code = r.errors?.[0]?.extensions?.code;
        expect(['UNAUTHENTICATED', 'TEMPORARILY_UNAVAILABLE']).toContain(code);
        if (code === 'TEMPORARILY_UNAVAILABLE') expect(r.errors?.[0]?.extensions?.retryAfterSeconds).toBe(1);
      }
    }
  });
});

describe('load shedding on event-loop delay', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer('hardloop', { RATE_LIMIT_ENABLED: 'false', LOAD_SHED_MAX_IN_FLIGHT: '0', LOAD_SHED_EVENT_LOOP_P99_MS: '150' });
  });
  afterAll(() => t?.close());

  it('sheds mutations while the event loop lags, and stops when it recovers', async () => {
    const { itemIds: [itemId] } = await createSale(t, { stock: 100, perUserLimit: 100 });
    const token = await t.token('loop-customer');
    let n = 0;
    const buy = () => t.client.gql(PURCHASE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: `loop-${n++}` } }, token).then((r) => r.data.purchase);
    expect((await buy()).__typename).toBe('PurchaseSuccess');

    // The server runs in this process: blocking our own loop is blocking its loop.
    const lag = setInterval(() => {
      const until = performance.now() + 300;
      while (performance.now() < until);
    }, 50);
    let shed;
    try {
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        const o = await buy();
        if (o.__typename === 'Rejected') {
          shed = o;
          break;
        }
      }
    } finally {
      clearInterval(lag);
    }
    expect(shed).toMatchObject({ code: 'TEMPORARILY_UNAVAILABLE', retryAfterSeconds: 1 });

    const deadline = Date.now() + 10_000;
    let recovered = false;
    while (!recovered && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      recovered = (await buy()).__typename === 'PurchaseSuccess';
    }
    expect(recovered).toBe(true);
  });
});

describe('WebSocket message size', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer('wsmax', { HTTP_MAX_BODY_BYTES: '4096' });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('closes a socket that sends a message over HTTP_MAX_BODY_BYTES with 1009, and keeps one under it', async () => {
    const { WebSocket } = await import('ws');
    const open = async () => {
      const ws = new WebSocket(`${t.app.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      return ws;
    };
    const closed = (ws: InstanceType<typeof WebSocket>) => new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));

    const big = await open();
    const bigClosed = closed(big);
    big.send(JSON.stringify({ type: 'connection_init', payload: { padding: 'x'.repeat(5000) } }));
    expect(await bigClosed).toBe(1009);

    const small = await open();
    const ack = new Promise((resolve) => small.once('message', (data) => resolve(JSON.parse(String(data)).type)));
    small.send(JSON.stringify({ type: 'connection_init', payload: {} }));
    expect(await ack).toBe('connection_ack');
    small.close();
  });
});
