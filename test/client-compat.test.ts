import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSale } from './support/fixtures.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { LiveClients, Recorder, RESERVATION_CHANGED } from './support/live.js';
import { PURCHASE } from './support/operations.js';

/**
 * What third-party clients meet at the edges (issue 19): error answers they can read, errors
 * without HTTP-only details on a socket, stock events a normalized cache can merge.
 */

let t: TestServer;
const clients = new LiveClients(() => t.app.url);

beforeAll(async () => {
  t = await startTestServer('client-compat', { RATE_LIMIT_ENABLED: 'false' });
});
afterAll(async () => {
  await clients.disposeAll();
  await t?.close();
});

async function buy(saleItemId: string, customer: string) {
  const r = await t.client.gql(PURCHASE, { input: { saleItemId, quantity: 1, idempotencyKey: `k-${customer}` } }, await t.token(customer));
  expect(r.data?.purchase?.__typename).toBe('PurchaseSuccess');
}

describe('406 and 415 answers', () => {
  it('415 for a body that is not JSON carries a GraphQL-over-HTTP error body', async () => {
    const res = await request(`${t.app.url}/graphql`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{ serverTime }' });
    expect(res.statusCode).toBe(415);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const body = (await res.body.json()) as { errors: { message: string; extensions: { code: string } }[] };
    expect(body.errors).toHaveLength(1);
    expect(body.errors[0].extensions.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(body.errors[0].message).toMatch(/application\/json/);
  });

  it('406 for an Accept no answer can have carries a GraphQL-over-HTTP error body', async () => {
    const res = await request(`${t.app.url}/graphql`, {
      method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/html' }, body: JSON.stringify({ query: '{ serverTime }' }),
    });
    expect(res.statusCode).toBe(406);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers.accept).toMatch(/application\/graphql-response\+json/);
    const body = (await res.body.json()) as { errors: { message: string; extensions: { code: string } }[] };
    expect(body.errors[0].extensions.code).toBe('NOT_ACCEPTABLE');
  });

  it('406 for a subscription asked for as plain JSON too', async () => {
    const { saleId } = await createSale(t);
    const res = await request(`${t.app.url}/graphql`, {
      method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ query: 'subscription($id: ID!) { stockChanged(saleId: $id) { version } }', variables: { id: saleId } }),
    });
    expect(res.statusCode).toBe(406);
    expect(((await res.body.json()) as { errors: { extensions: { code: string } }[] }).errors[0].extensions.code).toBe('NOT_ACCEPTABLE');
  });
});

describe('errors over a WebSocket', () => {
  it('carry no extensions.http (it shapes HTTP answers only)', async () => {
    // A viewer stream without a token: UNAUTHENTICATED, whose error tells Yoga the HTTP status.
    const noToken = new Recorder(clients.open(), RESERVATION_CHANGED, {});
    const [error] = await noToken.refusal();
    expect(error.extensions?.code).toBe('UNAUTHENTICATED');
    expect(error.extensions).not.toHaveProperty('http');
    // A mutation over the socket, refused the same way.
    const socket = clients.open();
    const result = await new Promise<{ errors?: readonly { extensions?: Record<string, unknown> }[] }>((resolve, reject) => {
      socket.subscribe({ query: 'mutation { cancelOrder(orderId: "x.1") { __typename } }' }, { next: resolve, error: reject, complete: () => undefined });
    });
    expect(result.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    expect(result.errors?.[0].extensions).not.toHaveProperty('http');
  });
});

const STOCK_WITH_ITEMS = `subscription($saleId: ID!) { stockChanged(saleId: $saleId) { saleId version items { saleItemId available sold saleItem { __typename id available reserved sold priceCents } } } }`;
type StockEvent = { stockChanged: { version: number; items: { saleItemId: string; available: number; sold: number; saleItem: { __typename: string; id: string; available: number; reserved: number; sold: number; priceCents: number } }[] } };

describe('stockChanged for a normalized cache', () => {
  it("names each item as SaleItem with its id and the event's figures, on the regular and the shared path", async () => {
    const { saleId, itemIds } = await createSale(t, { items: 2, stock: 5 });
    // The first subscriber of a document is served the regular way; later ones by the broadcast.
    const first = new Recorder<StockEvent>(clients.open(), STOCK_WITH_ITEMS, { saleId });
    await first.waitFor(() => true);
    const second = new Recorder<StockEvent>(clients.open(), STOCK_WITH_ITEMS, { saleId });
    await second.waitFor(() => true);
    await buy(itemIds[1], 'normalized-1');
    for (const sub of [first, second]) {
      const event = await sub.waitFor((d) => d.stockChanged.items.some((i) => i.sold === 1));
      expect(event.errors).toBeUndefined();
      for (const item of event.data!.stockChanged.items) {
        expect(item.saleItem).toEqual({
          __typename: 'SaleItem', id: item.saleItemId, available: item.available, reserved: 0, sold: item.sold, priceCents: 19_999,
        });
      }
      expect(event.data!.stockChanged.items.find((i) => i.saleItemId === itemIds[1])!.saleItem).toMatchObject({ available: 4, sold: 1 });
    }
    const shared = await request(`${t.app.url}/metrics`).then((r) => r.body.text());
    expect(Number(/^flashsale_subscription_shared_executions_total (\d+)/m.exec(shared)?.[1] ?? 0)).toBeGreaterThan(0);
  });
});
