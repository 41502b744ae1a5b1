import { GraphQLID, GraphQLNonNull, GraphQLObjectType, GraphQLSchema, GraphQLString, parse } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startApp, type App } from '../src/app.js';
import { createLogger } from '../src/logger.js';
import { schema } from '../src/schema/index.js';
import { TokenService } from '../src/services/auth.js';
import { PUBLIC_FIELDS } from '../src/schema/public-fields.js';
import { isShareableSubscription, SHAREABLE_SUBSCRIPTIONS } from '../src/services/live/shared-execution.js';
import { createSale } from './support/fixtures.js';
import { deleteRedisPrefix, dropDatabase, eventually, GqlClient, isolation, startTestServer, testConfig, type TestServer } from './support/harness.js';
import { ORDER_CHANGED, Recorder, RESERVATION_CHANGED, SALE_STATUS_CHANGED, STOCK_CHANGED, wsClient, LiveClients, type StockUpdate } from './support/live.js';
import { PURCHASE, RESERVE, SALE } from './support/operations.js';
import { scrape } from './support/prometheus-text.js';

type StatusEvent = { saleStatusChanged: { id: string; status: string; available: number; items: { id: string; available: number }[] } };

let t: TestServer;
const clients = new LiveClients(() => t.app.url);
const client = (token?: string) => clients.open(token);

beforeAll(async () => {
  t = await startTestServer('fanout', { WS_MAX_SUBSCRIPTIONS: '3', RATE_LIMIT_ENABLED: 'false' });
});
afterAll(async () => {
  await clients.disposeAll();
  await t?.close();
});

async function buy(server: { client: GqlClient }, tokens: TokenService, saleItemId: string, customer: string, quantity = 1) {
  const token = (await tokens.sign(customer, 'customer')).token;
  const r = await server.client.gql(PURCHASE, { input: { saleItemId, quantity, idempotencyKey: `k-${customer}` } }, token);
  expect(r.data?.purchase?.__typename).toBe('PurchaseSuccess');
}

async function metric(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  return (await scrape(url)).value(name, labels);
}

/** graphql-transport-ws by hand, to choose ids and see every message and the close code. */
class RawClient {
  readonly messages: any[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly ws: WebSocket;

  constructor(url: string) {
    this.ws = new WebSocket(`${url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
    this.ws.on('message', (data) => this.messages.push(JSON.parse(String(data))));
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  }

  async init(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.send({ type: 'connection_init', payload: {} });
    await this.waitFor((m) => m.type === 'connection_ack');
  }

  send(message: unknown): void {
    this.ws.send(JSON.stringify(message));
  }

  subscribe(id: string, query: string, variables: Record<string, unknown>): void {
    this.send({ id, type: 'subscribe', payload: { query, variables } });
  }

  of(id: string): any[] {
    return this.messages.filter((m) => m.id === id);
  }

  waitFor(match: (m: any) => boolean, timeoutMs = 5000): Promise<any> {
    return eventually(async () => this.messages.find(match) ?? null, timeoutMs, 10);
  }

  close(): void {
    this.ws.close();
  }
}

describe('public subscriptions on one instance', () => {
  it('execute each event once for all their subscribers, and send each what the regular path sends', async () => {
    const { saleId, itemIds } = await createSale(t, { stock: 10, perUserLimit: 1 });
    // The first subscriber of a document is served the regular way (Yoga's pipeline); the others share.
    const regular = new Recorder<{ stockChanged: StockUpdate }>(client(), STOCK_CHANGED, { saleId });
    await regular.waitFor(() => true);
    const shared = Array.from({ length: 29 }, () => new Recorder<{ stockChanged: StockUpdate }>(client(), STOCK_CHANGED, { saleId }));
    await eventually(async () => shared.every((s) => s.events.length >= 1), 10_000, 20);
    expect(shared.every((s) => s.data[0].stockChanged.items[0].available === 10)).toBe(true);

    const before = await metric(t.app.url, 'flashsale_subscription_shared_executions_total');
    for (let i = 0; i < 3; i++) {
      await buy(t, t.tokens, itemIds[0], `once-${i}`);
      await new Promise((r) => setTimeout(r, 150));
    }
    const done = (s: Recorder<{ stockChanged: StockUpdate }>) => s.data.some((d) => d.stockChanged.items[0].sold === 3);
    await eventually(async () => done(regular) && shared.every(done), 5000, 20);
    const executions = (await metric(t.app.url, 'flashsale_subscription_shared_executions_total')) - before;

    // Every subscriber saw the same events after its first, with the same content as the regular path's.
    const later = (s: Recorder<{ stockChanged: StockUpdate }>) => JSON.stringify(s.data.slice(1));
    for (const s of shared) expect(later(s)).toBe(later(regular));
    const events = regular.data.length - 1;
    expect(events).toBeGreaterThanOrEqual(1);
    // Once per event for the 29 subscribers; per subscriber it would be 29 times as many.
    expect(executions).toBeGreaterThanOrEqual(1);
    expect(executions).toBeLessThanOrEqual(events);
    [regular, ...shared].forEach((s) => s.stop());
  });

  it('keep graphql-transport-ws rules: duplicate ids, the per-connection limit, complete, bad arguments, closing', async () => {
    const { saleId } = await createSale(t, { stock: 5 });
    const query = `subscription RawStatus($saleId: ID!) { saleStatusChanged(saleId: $saleId) { id status } }`;
    const baseline = await metric(t.app.url, 'flashsale_subscriptions_open', { field: 'saleStatusChanged' });

    const a = new RawClient(t.app.url);
    await a.init();
    a.subscribe('first', query, { saleId });
    const first = await a.waitFor((m) => m.id === 'first' && m.type === 'next');
    a.subscribe('second', query, { saleId });
    const second = await a.waitFor((m) => m.id === 'second' && m.type === 'next');
    expect(second.payload).toEqual(first.payload);
    expect(second.payload).toEqual({ data: { saleStatusChanged: { id: saleId, status: 'ACTIVE' } } });
    a.subscribe('third', query, { saleId });
    await a.waitFor((m) => m.id === 'third' && m.type === 'next');
    // WS_MAX_SUBSCRIPTIONS is 3, shared subscriptions included.
    a.subscribe('fourth', query, { saleId });
    const refused = await a.waitFor((m) => m.id === 'fourth' && m.type === 'error');
    expect(refused.payload[0].extensions.code).toBe('TOO_MANY_SUBSCRIPTIONS');
    a.send({ id: 'second', type: 'complete' });
    await eventually(async () => (await metric(t.app.url, 'flashsale_subscriptions_open', { field: 'saleStatusChanged' })) === baseline + 2);
    a.subscribe('fifth', query, { saleId });
    await a.waitFor((m) => m.id === 'fifth' && m.type === 'next');
    // Arguments a subscription cannot open with are answered as the regular path answers them.
    a.send({ id: 'third', type: 'complete' });
    a.subscribe('bad', query, { saleId: 'no-such-sale' });
    const bad = await a.waitFor((m) => m.id === 'bad' && (m.type === 'error' || m.payload?.errors));
    expect(JSON.stringify(bad.payload)).toMatch(/NOT_FOUND|BAD_USER_INPUT/);
    await a.waitFor((m) => m.id === 'bad' && m.type === 'complete');
    // An id in use closes the socket with 4409, as graphql-ws does.
    a.subscribe('fifth', query, { saleId });
    expect((await a.closed).code).toBe(4409);
    await eventually(async () => (await metric(t.app.url, 'flashsale_subscriptions_open', { field: 'saleStatusChanged' })) === baseline);

    // Completed while it was still opening: it never sends anything and is not left open.
    const b = new RawClient(t.app.url);
    await b.init();
    b.subscribe('quick', query, { saleId });
    b.send({ id: 'quick', type: 'complete' });
    b.subscribe('after', query, { saleId });
    await b.waitFor((m) => m.id === 'after' && m.type === 'next');
    await new Promise((r) => setTimeout(r, 300));
    expect(b.of('quick').filter((m) => m.type === 'next').length).toBeLessThanOrEqual(1);
    b.close();
    await b.closed;
    await eventually(async () => (await metric(t.app.url, 'flashsale_subscriptions_open', { field: 'saleStatusChanged' })) === baseline);
  });

  it("never mix viewers' data: shared public streams and each viewer's own stream on the same connections", async () => {
    const { saleId, itemIds } = await createSale(t, { stock: 1, perUserLimit: 1 });
    const [alice, bob] = await Promise.all([t.token('fan-alice'), t.token('fan-bob')]);
    const connections = { alice: client(alice), bob: client(bob), anonymous: client() };
    const status = Object.fromEntries(Object.entries(connections).map(([who, c]) => [who, new Recorder<StatusEvent>(c, SALE_STATUS_CHANGED, { saleId })]));
    await eventually(async () => Object.values(status).every((s) => s.events.length >= 1), 5000, 20);
    const holds = { alice: new Recorder(connections.alice, RESERVATION_CHANGED, { saleId }), bob: new Recorder(connections.bob, RESERVATION_CHANGED, { saleId }) };
    const orders = { alice: new Recorder(connections.alice, ORDER_CHANGED), bob: new Recorder(connections.bob, ORDER_CHANGED) };
    await new Promise((r) => setTimeout(r, 300));

    const r = await t.client.gql(RESERVE, { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: 'fan-hold' } }, alice);
    expect(r.data.reserve.__typename).toBe('ReserveSuccess');
    await eventually(async () => Object.values(status).every((s) => s.last()?.saleStatusChanged.status === 'SOLD_OUT'), 5000, 20);
    await holds.alice.waitFor((d: any) => d.reservationChanged.id === r.data.reserve.reservation.id);
    await new Promise((r2) => setTimeout(r2, 300));

    // The public stream is the same for everyone, signed in or not.
    const seen = Object.values(status).map((s) => JSON.stringify(s.data));
    expect(new Set(seen).size).toBe(1);
    expect(status.alice.data.map((d) => d.saleStatusChanged.status)).toEqual(['ACTIVE', 'SOLD_OUT']);
    // The private streams are each viewer's own.
    expect(holds.alice.data.map((d: any) => d.reservationChanged.id)).toEqual([r.data.reserve.reservation.id]);
    expect(holds.bob.data).toEqual([]);
    expect(orders.bob.data).toEqual([]);
    [...Object.values(status), ...Object.values(holds), ...Object.values(orders)].forEach((s) => s.stop());
  });
});

describe('sale rows in status events', () => {
  it("show an admin's change made while the status stood still, with the next status change", async () => {
    const { saleId } = await createSale(t, { stock: 5, startsInMs: 2500 });
    const doc = `subscription RenamedStatus($saleId: ID!) { saleStatusChanged(saleId: $saleId) { status name } }`;
    const subs = [client(), client()].map((c) => new Recorder<{ saleStatusChanged: { status: string; name: string } }>(c, doc, { saleId }));
    await eventually(async () => subs.every((s) => s.data.length === 1), 5000, 20);
    expect(subs[0].data[0].saleStatusChanged).toEqual({ status: 'SCHEDULED', name: 'Test sale' });

    const renamed = await t.client.gql(`mutation Rename($id: ID!, $input: UpdateSaleInput!) { updateSale(id: $id, input: $input) { name } }`, { id: saleId, input: { name: 'Renamed sale' } }, t.admin);
    expect(renamed.data?.updateSale?.name).toBe('Renamed sale');
    for (const s of subs) await s.waitFor((d) => d.saleStatusChanged.status === 'ACTIVE', 6000);
    for (const s of subs) expect(s.data.map((d) => d.saleStatusChanged)).toEqual([{ status: 'SCHEDULED', name: 'Test sale' }, { status: 'ACTIVE', name: 'Renamed sale' }]);
    subs.forEach((s) => s.stop());
  });
});

describe('status changes', () => {
  let app: App;
  let iso: ReturnType<typeof isolation>;
  let slow: { client: GqlClient; admin: string };
  const tokens = () => new TokenService(app.config.JWT_SECRET);

  beforeAll(async () => {
    iso = isolation('fanoutslow');
    // Stock-only changes at most every 5 s, and no background workers: no status watcher at all.
    app = await startApp(testConfig(iso, { LIVE_STOCK_INTERVAL_MS: '5000', RATE_LIMIT_ENABLED: 'false' }), { log: createLogger('silent'), workers: false });
    slow = { client: new GqlClient(app.url), admin: (await tokens().sign('admin-1', 'admin')).token };
  });
  afterAll(async () => {
    await slow?.client.close();
    await app?.stop();
    await dropDatabase(iso.databaseUrl);
    await deleteRedisPrefix(iso.redisPrefix);
  });

  it('reach subscribers as soon as a purchase causes them, ahead of the stock coalescing and without the status watcher', async () => {
    const { saleId, itemIds } = await createSale({ client: slow.client, admin: slow.admin } as TestServer, { stock: 3, perUserLimit: 3 });
    const c = wsClient(app.url);
    clients.track(c);
    const statusSub = new Recorder<StatusEvent>(c, SALE_STATUS_CHANGED, { saleId });
    const stockSub = new Recorder<{ stockChanged: StockUpdate }>(c, STOCK_CHANGED, { saleId });
    await statusSub.waitFor((d) => d.saleStatusChanged.status === 'ACTIVE');
    await stockSub.waitFor((d) => d.stockChanged.status === 'ACTIVE');

    // A stock-only change waits for the next 5 s slot...
    await buy(slow, tokens(), itemIds[0], 'slow-1');
    await new Promise((r) => setTimeout(r, 1000));
    expect(stockSub.data.length).toBe(1);

    // ...but selling out is a status change: both streams get it at once.
    await buy(slow, tokens(), itemIds[0], 'slow-2', 2);
    const soldOutAt = Date.parse((await slow.client.gql(SALE, { id: saleId })).data.sale.soldOutAt);
    const statusEvent = await statusSub.waitFor((d) => d.saleStatusChanged.status === 'SOLD_OUT', 3000);
    const stockEvent = await stockSub.waitFor((d) => d.stockChanged.status === 'SOLD_OUT', 3000);
    console.log(`SOLD_OUT with stock coalesced to 5 s and no watcher: status after ${statusEvent.at - soldOutAt} ms, stock after ${stockEvent.at - soldOutAt} ms`);
    expect(statusEvent.at - soldOutAt).toBeLessThan(1000);
    expect(stockEvent.at - soldOutAt).toBeLessThan(1000);
    // The coalesced change was folded into the sell-out rather than sent on its own.
    expect(stockSub.data.map((d) => d.stockChanged.items[0].available)).toEqual([3, 0]);
    statusSub.stop();
    stockSub.stop();
  });
});

describe('which documents share one execution', () => {
  it('only subscriptions whose every field is listed as public, on the real schema', () => {
    const ok = (q: string) => isShareableSubscription(schema, parse(q));
    expect(ok(STOCK_CHANGED)).toBe(true);
    expect(ok(SALE_STATUS_CHANGED)).toBe(true);
    expect(ok(`subscription($s: ID!) { saleStatusChanged(saleId: $s) { __typename ...F items { product { name } sale { status } } } } fragment F on Sale { name soldOutAt }`)).toBe(true);
    expect(ok(RESERVATION_CHANGED)).toBe(false);
    expect(ok(ORDER_CHANGED)).toBe(false);
    expect(ok(`query($id: ID!) { sale(id: $id) { status } }`)).toBe(false);
    // Two operations in one document: not shared, whichever is picked.
    expect(ok(`subscription A($s: ID!) { stockChanged(saleId: $s) { version } } subscription B { orderChanged { id } }`)).toBe(false);
    // A fragment that is not even used still counts.
    expect(ok(`subscription($s: ID!) { stockChanged(saleId: $s) { version } } fragment Mine on Query { me { id } }`)).toBe(false);
  });

  it('every listed field exists and has no auth scopes; an unlisted or scoped field turns sharing off', () => {
    for (const [typeName, fields] of Object.entries({ ...PUBLIC_FIELDS, Subscription: SHAREABLE_SUBSCRIPTIONS })) {
      const type = schema.getType(typeName) as GraphQLObjectType;
      expect(type, typeName).toBeDefined();
      const defined = type.getFields();
      for (const field of fields) {
        expect(defined[field], `${typeName}.${field}`).toBeDefined();
        expect((defined[field].extensions as any)?.pothosOptions?.authScopes, `${typeName}.${field}`).toBeUndefined();
      }
    }

    const sale = (extra: 'unlisted' | 'scoped') =>
      new GraphQLObjectType({
        name: 'Sale',
        fields: {
          id: { type: new GraphQLNonNull(GraphQLID) },
          status: { type: GraphQLString, extensions: extra === 'scoped' ? { pothosOptions: { authScopes: { customer: true } } } : {} },
          viewerNote: { type: GraphQLString },
        },
      });
    const schemaWith = (extra: 'unlisted' | 'scoped') => {
      const Sale = sale(extra);
      return new GraphQLSchema({
        query: new GraphQLObjectType({ name: 'Query', fields: { ok: { type: GraphQLString } } }),
        subscription: new GraphQLObjectType({ name: 'Subscription', fields: { saleStatusChanged: { type: Sale, args: { saleId: { type: GraphQLID } } } } }),
      });
    };
    const unlisted = schemaWith('unlisted');
    expect(isShareableSubscription(unlisted, parse(`subscription { saleStatusChanged(saleId: "1") { id status } }`))).toBe(true);
    expect(isShareableSubscription(unlisted, parse(`subscription { saleStatusChanged(saleId: "1") { id viewerNote } }`))).toBe(false);
    expect(isShareableSubscription(schemaWith('scoped'), parse(`subscription { saleStatusChanged(saleId: "1") { id status } }`))).toBe(false);
  });
});
