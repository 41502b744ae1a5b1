import { ApolloClient, gql, HttpLink, InMemoryCache } from '@apollo/client';
import { createClient as createSseClient } from 'graphql-sse';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSale } from './support/fixtures.js';
import { eventually, startTestServer, type TestServer } from './support/harness.js';
import { LiveClients, Recorder, RESERVATION_CHANGED } from './support/live.js';
import { PURCHASE } from './support/operations.js';
import introspection from '../src/generated/graphql/possible-types.json' with { type: 'json' };

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

describe('Apollo Client 4 with the generated possibleTypes', () => {
  const BUY = gql`mutation BuyForApollo($input: PurchaseInput!) { purchase(input: $input) {
    __typename
    ... on UserError { code message }
    ... on Rejected { available }
    ... on PurchaseSuccess { order { id quantity } } } }`;
  type Bought = { purchase: { __typename: string; code?: string; message?: string; available?: number | null; order?: { id: string; quantity: number } } };

  async function apollo(possibleTypes: Record<string, string[]> | undefined, customer: string) {
    const token = await t.token(customer);
    return new ApolloClient({
      link: new HttpLink({ uri: `${t.app.url}/graphql`, headers: { authorization: `Bearer ${token}` } }),
      cache: new InMemoryCache(possibleTypes ? { possibleTypes } : {}),
    });
  }

  it('keeps the fields of `... on UserError` (and `... on Rejected`); without possibleTypes Apollo drops the interface fragment', async () => {
    const { itemIds } = await createSale(t, { stock: 5, perUserLimit: 1 });
    const input = (key: string, quantity = 1) => ({ input: { saleItemId: itemIds[0], quantity, idempotencyKey: key } });

    const client = await apollo(introspection.possibleTypes, 'apollo-with');
    const ok = await client.mutate<Bought>({ mutation: BUY, variables: input('apollo-1') });
    expect(ok.data?.purchase).toMatchObject({ __typename: 'PurchaseSuccess', order: { quantity: 1 } });
    const refused = await client.mutate<Bought>({ mutation: BUY, variables: input('apollo-2') });
    expect(refused.data?.purchase).toMatchObject({ __typename: 'Rejected', code: 'LIMIT_EXCEEDED' });
    expect(refused.data?.purchase.message).toMatch(/\w/);
    expect(refused.data?.purchase).toHaveProperty('available');

    // The same answer through a cache that does not know Rejected implements UserError.
    const blind = await apollo(undefined, 'apollo-without');
    const warn = console.warn;
    console.warn = () => undefined; // Apollo's "missing possibleTypes entry" warning, expected here
    try {
      const lost = await blind.mutate<Bought>({ mutation: BUY, variables: input('apollo-3', 5) });
      expect(lost.data?.purchase.__typename).toBe('Rejected');
      expect(lost.data?.purchase).toHaveProperty('available');
      expect(lost.data?.purchase).not.toHaveProperty('code');
      expect(lost.data?.purchase).not.toHaveProperty('message');
    } finally {
      console.warn = warn;
    }
    client.stop();
    blind.stop();
  });
});

describe('graphql-sse in both of its modes', () => {
  const STOCK = 'subscription Stock($saleId: ID!) { stockChanged(saleId: $saleId) { saleId items { saleItemId available sold } } }';
  type Stock = { stockChanged: { saleId: string; items: { saleItemId: string; available: number; sold: number }[] } };

  async function inFlight(): Promise<number> {
    const text = await request(`${t.app.url}/metrics`).then((r) => r.body.text());
    return Number(/^flashsale_graphql_in_flight (\d+)/m.exec(text)?.[1]);
  }

  for (const mode of [
    { name: 'single connection (reservations) at /graphql/stream', url: '/graphql/stream', singleConnection: true },
    { name: 'distinct connections at /graphql/stream', url: '/graphql/stream', singleConnection: false },
    { name: "distinct connections at /graphql (Yoga's own SSE)", url: '/graphql', singleConnection: false },
  ]) {
    it(`${mode.name}: the current stock, then the event a purchase causes; an open stream is not work in flight`, async () => {
      const { saleId, itemIds } = await createSale(t, { stock: 7 });
      const client = createSseClient({ url: `${t.app.url}${mode.url}`, singleConnection: mode.singleConnection, fetchFn: fetch, retryAttempts: 0 });
      const events: Stock[] = [];
      let failed: unknown = null;
      const stop = client.subscribe<Stock>({ query: STOCK, variables: { saleId } }, {
        next: (r) => {
          if (r.errors) failed = r.errors;
          if (r.data) events.push(r.data as Stock);
        },
        error: (e) => (failed = e),
        complete: () => undefined,
      });
      try {
        await eventually(async () => events.length > 0 || failed, 10_000);
        expect(failed).toBeNull();
        expect(events[0].stockChanged).toEqual({ saleId, items: [{ saleItemId: itemIds[0], available: 7, sold: 0 }] });
        expect(await inFlight()).toBe(0);
        await buy(itemIds[0], `sse-${mode.url}-${mode.singleConnection}`);
        await eventually(async () => events.some((e) => e.stockChanged.items[0].sold === 1), 10_000);
        expect(events.at(-1)!.stockChanged.items[0]).toEqual({ saleItemId: itemIds[0], available: 6, sold: 1 });
        expect(await inFlight()).toBe(0);
      } finally {
        stop();
        client.dispose();
      }
    });
  }
});
