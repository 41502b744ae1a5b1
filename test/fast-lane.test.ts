import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSale } from './support/fixtures.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { PURCHASE, SALE as SALE_LEVELS } from './support/operations.js';
import persistedDocuments from '../src/generated/graphql/persisted-documents.json' with { type: 'json' };

/**
 * The fast lane (src/server/fast-lane.ts) must be invisible: every request it answers must get
 * the very answer Yoga's full adapter gives. A chunked body (no Content-Length) always goes to
 * Yoga, so each request is sent both ways and the answers compared: status, headers, body.
 */

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Headers that differ by transport, not by answer. */
const TRANSPORT_HEADERS = new Set(['date', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'x-request-id']);

async function send(url: string, body: string, headers: Record<string, string>, chunked: boolean): Promise<Answer> {
  const res = await request(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: chunked ? Readable.from([Buffer.from(body)]) : body,
  });
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(res.headers)) if (!TRANSPORT_HEADERS.has(name)) out[name] = String(value);
  return { status: res.statusCode, headers: out, body: await res.body.text() };
}

async function laneCount(t: TestServer, lane: 'fast' | 'cache' | 'yoga'): Promise<number> {
  const text = await (await request(`${t.app.url}/metrics`)).body.text();
  const m = new RegExp(`^flashsale_graphql_http_requests_total\\{lane="${lane}"\\} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

function idOf(operationName: string): string {
  const entry = Object.entries(persistedDocuments as Record<string, string>).find(([, text]) => new RegExp(`^(query|mutation) ${operationName}\\(`).test(text));
  if (!entry) throw new Error(`${operationName} is not persisted; run npm run codegen`);
  return entry[0];
}

describe('fast lane', () => {
  let t: TestServer;
  let saleId: string;
  let soldOutItem: string;
  let customer: string;

  /** Sends the request through the lane and through Yoga; returns the lane's answer after comparing. */
  async function same(body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    // Served ahead of Yoga: by the lane itself, or from the response cache it consults.
    const ahead = async () => (await laneCount(t, 'fast')) + (await laneCount(t, 'cache'));
    const fastBefore = await ahead();
    const viaLane = await send(t.app.url, text, headers, false);
    const fastAfter = await ahead();
    const viaYoga = await send(t.app.url, text, headers, true);
    expect(viaLane).toEqual(viaYoga);
    return { ...viaLane, lane: fastAfter > fastBefore } as Answer & { lane: boolean };
  }

  beforeAll(async () => {
    t = await startTestServer('fast-lane', { RATE_LIMIT_ENABLED: 'false' });
    ({ saleId } = await createSale(t, { stock: 5 }));
    const sold = await createSale(t, { stock: 1, perUserLimit: 1 });
    soldOutItem = sold.itemIds[0];
    customer = await t.token('lane-customer');
    const buyer = await t.token('lane-buyer');
    const bought = await t.client.gql(PURCHASE, { input: { saleItemId: soldOutItem, quantity: 1, idempotencyKey: 'lane-buy' } }, buyer);
    expect(bought.data.purchase.__typename).toBe('PurchaseSuccess');
  });
  afterAll(async () => {
    await t?.close();
  });

  it('answers a query exactly as Yoga does, and counts it as served by the lane', async () => {
    const a = (await same({ query: SALE_LEVELS, variables: { id: saleId } })) as Answer & { lane: boolean };
    expect(a.status).toBe(200);
    expect(JSON.parse(a.body).data.sale.items[0].available).toBe(5);
    expect(a.lane).toBe(true);
  });

  it('takes persisted operations by documentId and by the APQ extension, with the same answer as the full text', async () => {
    const text = await send(t.app.url, JSON.stringify({ query: SALE_LEVELS, variables: { id: saleId } }), {}, false);
    const byId = await same({ documentId: idOf('SaleLevels'), variables: { id: saleId } });
    const byApq = await same({ extensions: { persistedQuery: { version: 1, sha256Hash: idOf('SaleLevels').replace('sha256:', '') } }, variables: { id: saleId } });
    // Codegen persists the normalised text (fields sorted), so only the key order may differ.
    expect(JSON.parse(byId.body)).toEqual(JSON.parse(text.body));
    expect(JSON.parse(byApq.body)).toEqual(JSON.parse(text.body));
    expect(JSON.parse(byId.body).data.sale.id).toBe(saleId);
  });

  it('answers an unknown persisted id with PERSISTED_QUERY_NOT_FOUND, and a body with neither text nor id as Yoga does', async () => {
    const unknown = await same({ documentId: `sha256:${'0'.repeat(64)}`, variables: {} });
    expect(JSON.parse(unknown.body).errors[0].extensions.code).toBe('PERSISTED_QUERY_NOT_FOUND');
    const empty = await same({ variables: {} });
    expect(JSON.parse(empty.body).errors[0].message).toBe('Must provide query string.');
  });

  it('gives business answers and auth errors identically: Rejected SOLD_OUT, UNAUTHENTICATED without or with a bad token, FORBIDDEN', async () => {
    const input = { saleItemId: soldOutItem, quantity: 1, idempotencyKey: 'lane-sold-out' };
    const soldOut = await same({ query: PURCHASE, variables: { input } }, { authorization: `Bearer ${customer}` });
    expect(JSON.parse(soldOut.body).data.purchase.code).toBe('SOLD_OUT');
    const anonymous = await same({ query: PURCHASE, variables: { input } });
    expect(JSON.parse(anonymous.body).errors[0].extensions.code).toBe('UNAUTHENTICATED');
    const badToken = await same({ query: PURCHASE, variables: { input } }, { authorization: `Bearer ${customer}x` });
    expect(JSON.parse(badToken.body).errors[0].extensions.code).toBe('UNAUTHENTICATED');
    const forbidden = await same({ query: `mutation($id: ID!) { pauseSale(id: $id) { id } }`, variables: { id: saleId } }, { authorization: `Bearer ${customer}` });
    expect(JSON.parse(forbidden.body).errors[0].extensions.code).toBe('FORBIDDEN');
  });

  it('gives request errors identically under each Accept: bad variables, validation, syntax, unknown operation name, NUL', async () => {
    const bodies: unknown[] = [
      { query: PURCHASE, variables: { input: { saleItemId: soldOutItem, quantity: 'one', idempotencyKey: 'k' } } },
      { query: `{ sale(id: "${saleId}") { noSuchField } }` },
      { query: `{ sale(id: ` },
      { query: SALE_LEVELS, variables: { id: saleId }, operationName: 'Elsewhere' },
      { query: SALE_LEVELS, variables: { id: `a\u0000b` } },
      { query: SALE_LEVELS, variables: ['not', 'an', 'object'] },
      '{"query": "{ serverTime", ',
    ];
    const accepts = [undefined, '*/*', 'application/json', 'application/graphql-response+json', 'application/graphql-response+json, application/json', 'text/event-stream'];
    const statuses = new Set<number>();
    for (const body of bodies) {
      for (const accept of accepts) {
        const a = await same(body, accept ? { accept, authorization: `Bearer ${customer}` } : { authorization: `Bearer ${customer}` });
        statuses.add(a.status);
      }
    }
    // The cases reach both of Yoga's ways of answering them: 200 with errors, and 400.
    expect([...statuses].sort()).toEqual(expect.arrayContaining([200, 400]));
  });

  it('echoes the caller\'s request id, or makes one, as Yoga does', async () => {
    const given = await request(`${t.app.url}/graphql`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'client-abc.123' }, body: JSON.stringify({ query: SALE_LEVELS, variables: { id: saleId } }),
    });
    await given.body.text();
    expect(given.headers['x-request-id']).toBe('client-abc.123');
    const made = await request(`${t.app.url}/graphql`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'not valid!' }, body: JSON.stringify({ query: SALE_LEVELS, variables: { id: saleId } }),
    });
    await made.body.text();
    expect(made.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('records the HTTP latency histogram per operation for the requests it serves', async () => {
    const metricLine = async () => {
      const text = await (await request(`${t.app.url}/metrics`)).body.text();
      const line = text.split('\n').find((l) => l.startsWith('graphql_yoga_http_duration_count{') && l.includes('operationName="SaleLevels"') && l.includes('statusCode="200"'));
      return line ? Number(line.split(' ').pop()) : 0;
    };
    const before = await metricLine();
    for (let i = 0; i < 3; i++) await send(t.app.url, JSON.stringify({ query: SALE_LEVELS, variables: { id: saleId } }), {}, false);
    expect(await metricLine()).toBe(before + 3);
  });

  it('hands large bodies to Yoga, which answers them', async () => {
    const yogaBefore = await laneCount(t, 'yoga');
    const padding = 'x'.repeat(20_000);
    const large = await send(t.app.url, JSON.stringify({ query: SALE_LEVELS, variables: { id: saleId }, extensions: { padding } }), {}, false);
    expect(JSON.parse(large.body).data.sale.items).toHaveLength(1);
    expect(await laneCount(t, 'yoga')).toBeGreaterThanOrEqual(yogaBefore + 1);
  });

  it("answers a browser's (Origin) reads and purchases in the lane with Yoga's CORS headers, a cached read too", async () => {
    // Browsers send Origin with every POST, same-origin or not: without this, every web shopper went the slow way.
    const origin = { origin: 'http://shop.example' };
    const read = (await same({ query: SALE_LEVELS, variables: { id: saleId } }, origin)) as Answer & { lane: boolean };
    expect(read.lane).toBe(true);
    expect(read.headers).toMatchObject({ 'access-control-allow-origin': 'http://shop.example', vary: 'Origin' });
    // Another origin asks for the same answer, served from the response cache: its own headers.
    const hitsBefore = await laneCount(t, 'cache');
    const other = (await same({ query: SALE_LEVELS, variables: { id: saleId } }, { origin: 'http://m.shop.example' })) as Answer & { lane: boolean };
    expect(await laneCount(t, 'cache')).toBe(hitsBefore + 1);
    expect(other.headers['access-control-allow-origin']).toBe('http://m.shop.example');
    expect(other.body).toBe(read.body);

    const rejected = (await same({ query: PURCHASE, variables: { input: { saleItemId: soldOutItem, quantity: 1, idempotencyKey: 'lane-browser' } } }, { ...origin, authorization: `Bearer ${customer}` })) as Answer & { lane: boolean };
    expect(rejected.lane).toBe(true);
    expect(JSON.parse(rejected.body).data.purchase).toMatchObject({ __typename: 'Rejected', code: 'SOLD_OUT' });
    expect(rejected.headers['access-control-allow-origin']).toBe('http://shop.example');
  });
});

describe('fast lane with an origin list, and with no browser origins allowed', () => {
  let listed: TestServer;
  let none: TestServer;
  let saleId: string;

  beforeAll(async () => {
    listed = await startTestServer('fast-lane-cors', { RATE_LIMIT_ENABLED: 'false', CORS_ORIGINS: 'https://shop.example, https://m.shop.example' });
    none = await startTestServer('fast-lane-nocors', { RATE_LIMIT_ENABLED: 'false', CORS_ORIGINS: '' });
    ({ saleId } = await createSale(listed, { stock: 5 }));
  });
  afterAll(async () => {
    await listed?.close();
    await none?.close();
  });

  it('answers a listed origin, an unlisted one and a server without CORS exactly as Yoga does', async () => {
    const body = JSON.stringify({ query: SALE_LEVELS, variables: { id: saleId } });
    for (const [server, origin, allowed] of [
      [listed, 'https://m.shop.example', 'https://m.shop.example'],
      [listed, 'https://evil.example', 'null'],
      [none, 'https://shop.example', undefined],
    ] as const) {
      const viaLane = await send(server.app.url, body, { origin }, false);
      const viaYoga = await send(server.app.url, body, { origin }, true);
      expect(viaLane, origin).toEqual(viaYoga);
      expect(viaLane.headers['access-control-allow-origin'], origin).toBe(allowed);
    }
    expect(await laneCount(listed, 'fast')).toBeGreaterThanOrEqual(2);
  });
});

describe('fast lane with rate limits', () => {
  let t: TestServer;

  beforeAll(async () => {
    t = await startTestServer('fast-lane-rl', { RATE_LIMIT_TIER_STANDARD: 'burst:2,per_s:0.02' });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('counts lane and Yoga requests against one budget and answers RATE_LIMITED with the same Retry-After', async () => {
    const { itemIds } = await createSale(t, { stock: 1 });
    const first = await t.client.gql(PURCHASE, { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: 'first' } }, await t.token('lane-first'));
    expect(first.data.purchase.__typename).toBe('PurchaseSuccess');
    const token = await t.token('lane-limited');
    const body = JSON.stringify({ query: PURCHASE, variables: { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: 'rl' } } });
    const headers = { authorization: `Bearer ${token}` };
    const codes: string[] = [];
    for (const chunked of [false, true, false, true]) {
      const a = await send(t.app.url, body, headers, chunked);
      const parsed = JSON.parse(a.body);
      codes.push(parsed.data?.purchase?.code ?? parsed.errors?.[0]?.extensions?.code);
      if (codes.at(-1) === 'RATE_LIMITED') expect(Number(a.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
    expect(codes).toEqual(['SOLD_OUT', 'SOLD_OUT', 'RATE_LIMITED', 'RATE_LIMITED']);
  });
});
