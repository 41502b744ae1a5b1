import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSale } from './support/fixtures.js';
import { eventually, startTestServer, type TestServer } from './support/harness.js';
import { STOCK_CHANGED, Recorder, wsClient } from './support/live.js';
import { PURCHASE, RESERVE, SALE_ITEM } from './support/operations.js';
import { scrape } from './support/prometheus-text.js';

const JOIN_WAITLIST = /* GraphQL */ `mutation JoinWaitlist($item: ID!) { joinWaitlist(saleItemId: $item, quantity: 1) { __typename ... on Rejected { code } } }`;
const JOIN_QUEUE = /* GraphQL */ `mutation JoinQueue($saleId: ID!) { joinQueue(saleId: $saleId) { __typename ... on QueueTicket { status } ... on Rejected { code } } }`;

/** Log lines the server wrote, parsed. */
let logLines: Record<string, any>[] = [];
let t: TestServer;

beforeAll(async () => {
  t = await startTestServer('metrics', { RATE_LIMIT_ENABLED: 'false' }, { captureLogs: 'debug' });
  logLines = t.logs;
});
afterAll(() => t?.close());

describe('/metrics', () => {
  it('shows requests per operation, outcomes, live stock, holds, waitlist, queue, subscriptions, latency and drift', async () => {
    const shop = await createSale(t, { stock: 10, perUserLimit: 2 });
    const scarce = await createSale(t, { stock: 1, perUserLimit: 1 });
    const room = await createSale(t, { waitingRoom: true, admitPerSecond: 1, startsInMs: 60_000 });
    const item = shop.itemIds[0];

    const buy = async (customer: string, saleItemId: string, key: string) =>
      (await t.client.gql(PURCHASE, { input: { saleItemId, quantity: 1, idempotencyKey: key } }, await t.token(customer))).data.purchase;
    expect((await buy('alice', item, 'a1')).__typename).toBe('PurchaseSuccess');
    expect((await buy('alice', item, 'a2')).__typename).toBe('PurchaseSuccess');
    expect((await buy('alice', item, 'a3')).code).toBe('LIMIT_EXCEEDED');
    const hold = await t.client.gql(RESERVE, { input: { saleItemId: item, quantity: 1, idempotencyKey: 'b1' } }, await t.token('bob'));
    expect(hold.data.reserve.__typename).toBe('ReserveSuccess');
    expect((await buy('carol', scarce.itemIds[0], 'c1')).__typename).toBe('PurchaseSuccess');
    expect((await buy('dave', scarce.itemIds[0], 'd1')).code).toBe('SOLD_OUT');
    expect((await t.client.gql(JOIN_WAITLIST, { item: scarce.itemIds[0] }, await t.token('dave'))).data.joinWaitlist.__typename).toBe('WaitlistEntry');
    expect((await t.client.gql(JOIN_QUEUE, { saleId: room.saleId }, await t.token('erin'))).data.joinQueue).toMatchObject({ status: 'PENDING' });

    const ws = wsClient(t.app.url);
    const watcher = new Recorder(ws, STOCK_CHANGED, { saleId: shop.saleId });
    await watcher.waitFor((d) => d.stockChanged.saleId === shop.saleId);
    await t.app.services.recovery.reconcile();

    const m = await scrape(t.app.url);
    const live = (await t.client.gql(SALE_ITEM, { id: item })).data.saleItem;
    expect(live).toMatchObject({ available: 7, reserved: 1, sold: 2 });

    // GraphQL requests per operation (Yoga's Prometheus plugin).
    expect(m.value('graphql_envelop_request', { operationName: 'Purchase' })).toBe(5);
    expect(m.value('graphql_envelop_request_duration_count', { operationName: 'Purchase' })).toBe(5);
    expect(m.find('graphql_envelop_request_duration_bucket', { operationName: 'Purchase', le: '+Inf' })).toHaveLength(1);
    expect(m.value('graphql_yoga_http_duration_count', { operationName: 'Reserve', statusCode: '200' })).toBe(1);
    expect(m.find('graphql_yoga_http_duration_count').every((s) => !('url' in s.labels))).toBe(true);

    // Outcomes by ErrorCode.
    expect(m.value('flashsale_buy_outcomes_total', { mutation: 'purchase', outcome: 'OK' })).toBe(3);
    expect(m.value('flashsale_buy_outcomes_total', { mutation: 'purchase', outcome: 'LIMIT_EXCEEDED' })).toBe(1);
    expect(m.value('flashsale_buy_outcomes_total', { mutation: 'purchase', outcome: 'SOLD_OUT' })).toBe(1);
    expect(m.value('flashsale_buy_outcomes_total', { mutation: 'reserve', outcome: 'OK' })).toBe(1);

    // Live state, read at scrape time: equal to what the API answers.
    const ofItem = { sale_id: shop.saleId, sale_item_id: item };
    expect(m.value('flashsale_stock_available_units', ofItem)).toBe(live.available);
    expect(m.value('flashsale_stock_reserved_units', ofItem)).toBe(live.reserved);
    expect(m.value('flashsale_stock_sold_units', ofItem)).toBe(live.sold);
    expect(m.value('flashsale_stock_available_units', { sale_item_id: scarce.itemIds[0] })).toBe(0);
    expect(m.value('flashsale_waitlist_waiting', { sale_item_id: scarce.itemIds[0] })).toBe(1);
    expect(m.value('flashsale_waitlist_waiting', ofItem)).toBe(0);
    expect(m.value('flashsale_queue_waiting', { sale_id: room.saleId })).toBe(1);
    expect(m.find('flashsale_queue_waiting', { sale_id: shop.saleId })).toHaveLength(0);

    // Subscriptions and connections.
    expect(m.value('flashsale_subscriptions_open', { field: 'stockChanged' })).toBe(1);
    expect(m.value('flashsale_websocket_connections')).toBe(1);

    // Redis and PostgreSQL latency.
    expect(m.value('flashsale_redis_duration_seconds_count', { operation: 'reserve', outcome: 'ok' })).toBe(6);
    expect(m.value('flashsale_redis_duration_seconds_count', { operation: 'snapshot' })).toBeGreaterThan(0);
    expect(m.value('flashsale_postgres_duration_seconds_count', { operation: 'insert', table: 'orders' })).toBeGreaterThanOrEqual(3);
    expect(m.find('flashsale_postgres_duration_seconds_bucket', { operation: 'select', le: '+Inf' }).length).toBeGreaterThan(0);

    // Reconciliation drift: Redis and PostgreSQL agree.
    expect(m.find('flashsale_stock_drift_units', ofItem)).toEqual([expect.objectContaining({ value: 0 })]);

    watcher.stop();
    await ws.dispose();
    await eventually(async () => (await scrape(t.app.url)).value('flashsale_subscriptions_open', { field: 'stockChanged' }) === 0);
    await eventually(async () => (await scrape(t.app.url)).value('flashsale_websocket_connections') === 0);
  });

  it('moves the stock gauges with the sale, without a request touching them', async () => {
    const { saleId, itemIds } = await createSale(t, { stock: 3, perUserLimit: 3 });
    const labels = { sale_id: saleId, sale_item_id: itemIds[0] };
    expect((await scrape(t.app.url)).value('flashsale_stock_available_units', labels)).toBe(3);
    await t.client.gql(PURCHASE, { input: { saleItemId: itemIds[0], quantity: 3, idempotencyKey: 'all' } }, await t.token('frank'));
    const m = await scrape(t.app.url);
    expect(m.value('flashsale_stock_available_units', labels)).toBe(0);
    expect(m.value('flashsale_stock_sold_units', labels)).toBe(3);
  });
});

describe('request logs', () => {
  it('echo a given x-request-id and log the operation under it, with its name', async () => {
    const { itemIds } = await createSale(t, { stock: 5 });
    const token = await t.token('grace');
    const res = await request(`${t.app.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'x-request-id': 'req-from-the-edge-1' },
      body: JSON.stringify({ query: PURCHASE, variables: { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: 'g1' } }, operationName: 'Purchase' }),
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-request-id']).toBe('req-from-the-edge-1');
    expect(JSON.parse(await res.body.text()).data.purchase.__typename).toBe('PurchaseSuccess');
    const line = await eventually(async () => logLines.find((l) => l.requestId === 'req-from-the-edge-1' && l.msg === 'operation done'));
    expect(line).toMatchObject({ operationName: 'Purchase', operationType: 'mutation', source: 'graphql' });
    expect(typeof line.durationMs).toBe('number');
    // Lines the services write while serving it are not children of it; the plugin's line is the join point.
    expect(JSON.stringify(logLines)).not.toContain(token);
  });

  it('generate a request id when none (or a malformed one) is sent, and log errors with their codes', async () => {
    const res = await request(`${t.app.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'bad id with spaces' },
      body: JSON.stringify({ query: 'query Me { me { id } }' , operationName: 'Me' }),
    });
    const id = String(res.headers['x-request-id']);
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    await res.body.text();
    const anonymous = await request(`${t.app.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer not-a-token' },
      body: JSON.stringify({ query: 'query Me { me { id } }' }),
    });
    const failedId = String(anonymous.headers['x-request-id']);
    expect(failedId).not.toBe(id);
    await anonymous.body.text();
    const line = await eventually(async () => logLines.find((l) => l.requestId === failedId && l.msg === 'operation answered with errors'));
    expect(line).toMatchObject({ level: 30, operationName: 'Me', codes: ['UNAUTHENTICATED'] });
  });
});
