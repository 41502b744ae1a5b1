import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KNOWN_OPERATIONS, operationLabel } from '../src/server/known-operations.js';
import { createSale } from './support/fixtures.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { SALE, SALE_ITEM } from './support/operations.js';
import { parsePrometheusText } from './support/prometheus-text.js';

// Issue 17 c: 1,500 anonymous queries with random operation names grew /metrics from 78 KB to
// 5.1 MB (43,500 series). Names our clients use keep their label; every other name is `other`.

let t: TestServer;
let saleId: string;
let itemId: string;
beforeAll(async () => {
  t = await startTestServer('metricsbound', { RATE_LIMIT_ENABLED: 'false' });
  ({ saleId, itemIds: [itemId] } = await createSale(t, { stock: 5 }));
});
afterAll(() => t?.close());

async function metricsText(): Promise<string> {
  const res = await request(`${t.app.url}/metrics`);
  expect(res.statusCode).toBe(200);
  return res.body.text();
}

const post = (body: object) => t.client.raw(JSON.stringify(body));

/**
 * The ways a client can put a name of its own into a label: a named query (fast lane), a request
 * `operationName` that names nothing in its document, a GET (Yoga's full path), a shared anonymous
 * stock read answered from the response cache (a miss, then a hit), a mutation refused in
 * execution, a document that fails validation.
 */
const KINDS: ((name: string) => Promise<unknown>)[] = [
  (name) => post({ query: `query ${name} { serverTime }` }),
  (name) => post({ query: `{ serverTime }`, operationName: name }),
  async (name) => (await request(`${t.app.url}/graphql?query=${encodeURIComponent(`query ${name} { serverTime }`)}`, { headers: { accept: 'application/json' } })).body.text(),
  async (name) => {
    const read = { query: `query ${name}($id: ID!) { sale(id: $id) { id status available } }`, variables: { id: saleId } };
    await post(read);
    await post(read);
  },
  (name) => post({ query: `mutation ${name}($i: ID!) { purchase(input: { saleItemId: $i, quantity: 1, idempotencyKey: "k" }) { __typename } }`, variables: { i: itemId } }),
  (name) => post({ query: `query ${name} { noSuchField }` }),
];

const randomName = () => `Op_${randomBytes(6).toString('hex')}`;

describe('/metrics stays bounded whatever operation names clients send', () => {
  it('1,500 requests with random operation names add no series; known names keep their label', async () => {
    // Our own operations, and one of each unknown kind, so the baseline holds every series a
    // client can make (the `other` ones included).
    for (const doc of [SALE, SALE_ITEM]) for (let i = 0; i < 2; i++) await t.client.gql(doc, { id: doc === SALE ? saleId : itemId });
    await post({ query: '{ serverTime }' });
    for (const kind of KINDS) await kind(randomName());
    const baseline = await metricsText();
    const baselineSeries = parsePrometheusText(baseline).length;

    const names = Array.from({ length: 1_500 }, randomName);
    for (let i = 0; i < names.length; i += 50) await Promise.all(names.slice(i, i + 50).map((name, j) => KINDS[(i + j) % KINDS.length](name)));

    const after = await metricsText();
    const samples = parsePrometheusText(after);
    const key = (x: { name: string; labels: Record<string, string> }) => `${x.name}${JSON.stringify(x.labels)}`;
    const before = new Set(parsePrometheusText(baseline).map(key));
    // Not one series per name (before: ~30 series each, 43,500 in the issue). Background work and
    // the process (a GC kind, a Redis call the workers made for the first time) may add a few.
    expect(samples.filter((x) => !before.has(key(x)) && 'operationName' in x.labels).map(key)).toEqual([]);
    expect(samples.length, `${baselineSeries} series before, ${samples.length} after`).toBeLessThanOrEqual(baselineSeries + 100);
    expect(after.length, `${baseline.length} bytes before, ${after.length} after`).toBeLessThan(baseline.length * 1.15);

    // No made-up name is a label value anywhere.
    const labelled = new Set(samples.map((s) => s.labels.operationName).filter((v): v is string => v !== undefined));
    for (const value of labelled) expect(KNOWN_OPERATIONS.has(value) || value === 'other' || value === 'Anonymous', value).toBe(true);
    expect(names.some((n) => after.includes(n))).toBe(false);

    // Everything they sent is still counted, under `other`.
    const sum = (name: string, labels: Record<string, string>) =>
      samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0);
    expect(sum('graphql_envelop_request', { operationName: 'other', operationType: 'mutation' })).toBeGreaterThanOrEqual(names.length / KINDS.length);
    expect(sum('graphql_yoga_http_duration_count', { operationName: 'other', method: 'GET' })).toBeGreaterThanOrEqual(names.length / KINDS.length);
    expect(sum('graphql_envelop_error_result', { operationName: 'other', phase: 'validate' })).toBeGreaterThanOrEqual(names.length / KINDS.length);

    // Our own operations keep their names, on every path (fast lane, response cache hits).
    expect(sum('graphql_envelop_request', { operationName: 'SaleLevels' })).toBeGreaterThanOrEqual(1);
    expect(sum('graphql_yoga_http_duration_count', { operationName: 'SaleLevels' })).toBe(2);
    expect(sum('graphql_yoga_http_duration_count', { operationName: 'SaleItemLevels' })).toBe(2);
    expect(sum('graphql_yoga_http_duration_count', { operationName: 'Anonymous' })).toBeGreaterThanOrEqual(1);
  });

  it('knows the operations of our clients: persisted operations, GraphiQL examples, the live pages', () => {
    for (const name of ['Purchase', 'SaleLevels', 'StormPurchase', 'StockRead', 'Sales', 'Buy', 'WatchStock', 'LiveSale', 'LiveStock', 'ShopSale', 'Login', 'Register', 'ServerTime']) {
      expect(operationLabel(name), name).toBe(name);
    }
    expect(operationLabel(undefined)).toBe('Anonymous');
    expect(operationLabel('')).toBe('Anonymous');
    expect(operationLabel('purchase')).toBe('other');
    expect(operationLabel('x'.repeat(10_000))).toBe('other');
    expect(KNOWN_OPERATIONS.size).toBeLessThan(200);
  });
});
