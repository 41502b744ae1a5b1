import { readdirSync, readFileSync } from 'node:fs';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type App } from '../src/app.js';
import { createLogger } from '../src/logger.js';
import { createSale } from './support/fixtures.js';
import { eventually, GqlClient, startTestServer, type TestServer } from './support/harness.js';
import { RESERVATION_CHANGED, Recorder, SALE_STATUS_CHANGED, silentHoldAfterSnapshot, STOCK_CHANGED, wsClient, type StockUpdate } from './support/live.js';
import { PURCHASE, SALE_ITEM } from './support/operations.js';
import { scrape } from './support/prometheus-text.js';
import { LocalRedisCluster } from './support/redis-cluster.js';

// The same server, its Lua scripts unchanged, on a real three-master Redis Cluster
// (REDIS_CLUSTER_NODES): every key of a sale shares the sale's hash slot, and pub/sub reaches
// every instance whichever node each connection landed on.

const JOIN_QUEUE = /* GraphQL */ `mutation JoinQueue($saleId: ID!) { joinQueue(saleId: $saleId) { __typename ... on QueueTicket { status } ... on Rejected { code } } }`;
const MY_TICKET = /* GraphQL */ `query MyTicket($saleId: ID!) { me { queueTicket(saleId: $saleId) { status admissionToken } } }`;
const JOIN_WAITLIST = /* GraphQL */ `mutation JoinWaitlist($item: ID!) { joinWaitlist(saleItemId: $item, quantity: 1) { __typename ... on WaitlistEntry { status position } ... on Rejected { code } } }`;
const LOGIN = /* GraphQL */ `mutation Login($email: String!, $password: String!) { login(email: $email, password: $password) { token } }`;

let cluster: LocalRedisCluster;
let t: TestServer;
/** A second instance on the same cluster, database and prefix: events must cross between them. */
let other: App;
let otherClient: GqlClient;

beforeAll(async () => {
  cluster = await LocalRedisCluster.start(3);
  // Rate limits stay on: their counters are keys of their own, outside any sale's slot. The
  // storm is 1,000 calls from one address, inside the per-address budget.
  // Customers' buckets refill once every 50 s, so counts below are exact.
  t = await startTestServer('cluster', { REDIS_CLUSTER_NODES: cluster.nodes, RATE_LIMIT_AUTH_PER_EMAIL: '3/60s', RATE_LIMIT_TIER_STANDARD: 'burst:10,per_s:0.02' });
  other = await startApp({ ...t.app.config }, { log: createLogger(t.app.config.LOG_LEVEL) });
  otherClient = new GqlClient(other.url, 64);
}, 90_000);

afterAll(async () => {
  await otherClient?.close();
  await other?.stop();
  await t?.close();
  await cluster?.stop();
});

describe('Lua scripts', () => {
  // Redis Cluster runs a script on the node of its declared key and refuses keys of other slots;
  // a script that reached outside its sale would pass every single-node test and fail here.
  it('touch only KEYS[1] and keys derived from it (the sale prefix, hash tag included)', () => {
    const dir = new URL('../src/services/stock/lua/', import.meta.url);
    const files = [...readdirSync(dir).map((f) => new URL(f, dir)), ...['rate-hit.lua', 'rate-bucket.lua'].map((f) => new URL(`../src/services/${f}`, import.meta.url))];
    // Locals that hold a key: assigned from `base ..` (base is KEYS[1] minus its 'meta' suffix). The
    // stock scripts run behind the shared preludes, so their locals count for every script.
    // rate_hit's and the token buckets' `key` is the limiter script's KEYS[1], or a bucket reserve.lua
    // gets as KEYS[2..] only off a cluster (the engine folds buckets in only then; tested below).
    const derived = new Set(['base', 'KEYS[1]', 'key']);
    for (const file of files) {
      for (const m of readFileSync(file, 'utf8').matchAll(/local\s+([\w\s,]+?)\s*=\s*(base\s*\.\.|string\.sub\(KEYS\[1\])/g)) for (const name of m[1].split(',')) derived.add(name.trim());
    }
    expect([...derived]).toEqual(expect.arrayContaining(['K_META', 'K_QM', 'rk', 'wq']));
    for (const file of files) {
      const lua = readFileSync(file, 'utf8');
      for (const m of lua.matchAll(/redis\.p?call\('([A-Z]+)'(?:,\s*([^,)]+))?/g)) {
        const [, command, key] = m;
        if (command === 'TIME') continue;
        const root = key?.trim().split(/\s*\.\.\s*/)[0];
        expect(derived.has(root ?? ''), `${file.pathname.split('/').pop()}: ${command} ${key}`).toBe(true);
      }
    }
  });
});

describe('on Redis Cluster', () => {
  it('sells exactly the stock to 1,000 simultaneous purchases from 400 customers over two instances', async () => {
    const limit = 2;
    const { saleId, itemIds } = await createSale(t, { stock: 300, perUserLimit: limit });
    const item = itemIds[0];
    const tokens = await Promise.all(Array.from({ length: 400 }, (_, i) => t.token(`cluster-customer-${i}`)));
    const clients = [t.client, otherClient];
    const results = await Promise.all(
      Array.from({ length: 1000 }, (_, i) =>
        clients[i % 2].gql(PURCHASE, { input: { saleItemId: item, quantity: 1, idempotencyKey: `c-${i}` } }, tokens[i % tokens.length])),
    );

    expect(results.filter((r) => r.status !== 200 || r.errors)).toEqual([]);
    const outcomes = results.map((r) => r.data.purchase);
    expect(outcomes.filter((o) => o.__typename === 'PurchaseSuccess')).toHaveLength(300);
    const codes = new Set(outcomes.filter((o) => o.__typename === 'Rejected').map((o) => o.code));
    expect([...codes].filter((c) => c !== 'SOLD_OUT' && c !== 'LIMIT_EXCEEDED')).toEqual([]);

    const db = t.app.db;
    const confirmed = await db.selectFrom('orders').select((eb) => eb.fn.sum<number>('quantity').as('units')).where('sale_item_id', '=', item).where('status', '=', 'CONFIRMED').executeTakeFirstOrThrow();
    expect(Number(confirmed.units)).toBe(300);
    const perCustomer = await db.selectFrom('orders').select(['customer_id', sql<number>`sum(quantity)`.as('units')]).where('sale_id', '=', saleId).groupBy('customer_id').execute();
    expect(Math.max(...perCustomer.map((r) => Number(r.units)))).toBeLessThanOrEqual(limit);

    for (const client of clients) {
      const live = await client.gql(SALE_ITEM, { id: item });
      expect(live.data.saleItem).toMatchObject({ available: 0, reserved: 0, sold: 300, initialStock: 300 });
      expect(live.data.saleItem.sale.status).toBe('SOLD_OUT');
    }
    // Every key of the sale sits on the one node that serves its slot.
    const prefix = t.app.config.REDIS_PREFIX;
    const home = await cluster.portOf(t.app.services.engine.keys.meta(saleId));
    for (const port of cluster.ports) {
      const keys = await cluster.keysOn(port, `${prefix}{sale:${saleId}}:*`);
      if (port === home) expect(keys.length).toBeGreaterThan(3);
      else expect(keys).toEqual([]);
    }
  });

  it('delivers stockChanged and saleStatusChanged up to SOLD_OUT to subscribers of the other instance', async () => {
    const { saleId, itemIds } = await createSale(t, { stock: 5, perUserLimit: 5 });
    const token = await t.token('cluster-watcher-buyer');
    const ws = wsClient(other.url, token);
    const stock = new Recorder(ws, STOCK_CHANGED, { saleId });
    const status = new Recorder(ws, SALE_STATUS_CHANGED, { saleId });
    // Viewer streams hear every sale through one pattern subscription (PSUBSCRIBE) per instance.
    const mine = new Recorder(ws, RESERVATION_CHANGED, { saleId });
    try {
      await stock.waitFor((d) => d.stockChanged.items[0].available === 5);
      await status.waitFor((d) => d.saleStatusChanged.status === 'ACTIVE');
      await eventually(async () => other.services.live.openStreams === 3);
      for (let i = 0; i < 5; i++) {
        const r = await t.client.gql(PURCHASE, { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: `w-${i}` } }, token);
        expect(r.data.purchase.__typename).toBe('PurchaseSuccess');
      }
      // The trailing event of the burst carries the final state: everything sold, nothing held.
      const last = await stock.waitFor((d) => d.stockChanged.items[0].sold === 5);
      expect(last.data!.stockChanged).toMatchObject({ status: 'SOLD_OUT', items: [{ available: 0, reserved: 0, sold: 5 }] });
      await status.waitFor((d) => d.saleStatusChanged.status === 'SOLD_OUT');
      await eventually(async () => new Set(mine.data.filter((d) => d.reservationChanged.status === 'CONFIRMED').map((d) => d.reservationChanged.id)).size === 5);
    } finally {
      stock.stop();
      status.stop();
      mine.stop();
      await ws.dispose();
    }
  });

  it("gives the other instance's subscribers a fresh snapshot after its pub/sub connection drops and returns on another node", async () => {
    const { saleId, itemIds } = await createSale(t, { stock: 50, perUserLimit: 5 });
    const ws = wsClient(other.url);
    const sub = new Recorder<{ stockChanged: StockUpdate }>(ws, STOCK_CHANGED, { saleId });
    try {
      const firstVersion = await silentHoldAfterSnapshot(sub, other.services.engine, saleId, itemIds[0], 'cluster-silent');

      // The instance's pub/sub connection is a plain connection to one node; dropped, it comes
      // back on the next node (a node that failed over would stay gone).
      const name = other.services.live.hub.connectionName;
      const where = await cluster.clientsNamed(name);
      expect(where).toHaveLength(1);
      await cluster.killClient(where[0].port, where[0].id);
      const fresh = await sub.waitFor((d) => d.stockChanged.items[0].available === 47, 5000);
      expect(fresh.data!.stockChanged.version).toBeGreaterThan(firstVersion);
      const now = await cluster.clientsNamed(name);
      expect(now).toHaveLength(1);
      expect(now[0].port).not.toBe(where[0].port);

      // Events published after the move still arrive.
      const bought = await t.client.gql(PURCHASE, { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: 'after-move' } }, await t.token('cluster-after-move'));
      expect(bought.data.purchase.__typename).toBe('PurchaseSuccess');
      const later = await sub.waitFor((d) => d.stockChanged.items[0].sold === 1, 5000);
      expect(later.data!.stockChanged.items[0].available).toBe(46);
    } finally {
      sub.stop();
      await ws.dispose();
    }
  });

  it('serves sales whose slots live on different nodes, each from its own node', async () => {
    const homes = new Map<number, { saleId: string; itemId: string }>();
    for (let i = 0; i < 12 && homes.size < 2; i++) {
      const { saleId, itemIds } = await createSale(t, { stock: 4, perUserLimit: 2 });
      homes.set(await cluster.portOf(t.app.services.engine.keys.meta(saleId)), { saleId, itemId: itemIds[0] });
    }
    expect(homes.size).toBe(2);
    const token = await t.token('cluster-two-sales');
    for (const { saleId, itemId } of homes.values()) {
      const bought = await otherClient.gql(PURCHASE, { input: { saleItemId: itemId, quantity: 2, idempotencyKey: `two-${saleId}` } }, token);
      expect(bought.data.purchase.__typename).toBe('PurchaseSuccess');
      const again = await t.client.gql(PURCHASE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: `more-${saleId}` } }, token);
      expect(again.data.purchase).toMatchObject({ __typename: 'Rejected', code: 'LIMIT_EXCEEDED' });
      expect((await t.client.gql(SALE_ITEM, { id: itemId })).data.saleItem).toMatchObject({ available: 2, sold: 2, reserved: 0 });
    }
    // The scrape-time gauges read each sale from its own node too.
    const m = await scrape(t.app.url);
    for (const { saleId, itemId } of homes.values()) {
      expect(m.value('flashsale_stock_available_units', { sale_id: saleId, sale_item_id: itemId })).toBe(2);
    }
  });

  it('runs the waiting-room, waitlist and rate-limit scripts too', async () => {
    const { saleId, itemIds } = await createSale(t, { stock: 1, perUserLimit: 1, waitingRoom: true, admitPerSecond: 100, startsInMs: 1500 });
    const [first, second] = await Promise.all(['cluster-q1', 'cluster-q2'].map((c) => t.token(c)));
    for (const token of [first, second]) expect((await t.client.gql(JOIN_QUEUE, { saleId }, token)).data.joinQueue).toMatchObject({ status: 'PENDING' });
    expect((await scrape(t.app.url)).value('flashsale_queue_waiting', { sale_id: saleId })).toBe(2);
    // The start shuffles the pre-queue once, then admission reaches both tickets.
    const admission = (token: string) => eventually(async () => {
      const ticket = (await otherClient.gql(MY_TICKET, { saleId }, token)).data.me.queueTicket;
      return ticket?.status === 'ADMITTED' ? (ticket.admissionToken as string) : null;
    }, 10_000, 100);
    const [firstAdmission, secondAdmission] = await Promise.all([admission(first), admission(second)]);
    const buy = (token: string, admissionToken: string, key: string) =>
      t.client.gql(PURCHASE, { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: key, admissionToken } }, token);
    expect((await buy(first, firstAdmission, 'q1')).data.purchase.__typename).toBe('PurchaseSuccess');
    expect((await buy(second, secondAdmission, 'q2')).data.purchase).toMatchObject({ __typename: 'Rejected', code: 'SOLD_OUT' });
    expect((await otherClient.gql(JOIN_WAITLIST, { item: itemIds[0] }, second)).data.joinWaitlist).toMatchObject({ __typename: 'WaitlistEntry', status: 'WAITING', position: 1 });
    expect((await scrape(other.url)).value('flashsale_waitlist_waiting', { sale_id: saleId, sale_item_id: itemIds[0] })).toBe(1);

    // Login attempts for one email are counted across both instances.
    const attempts = [];
    for (let i = 0; i < 4; i++) attempts.push(await [t.client, otherClient][i % 2].gql(LOGIN, { email: 'nobody@example.com', password: 'wrong password' }));
    expect(attempts.map((a) => a.errors?.[0]?.extensions?.code)).toEqual(['UNAUTHENTICATED', 'UNAUTHENTICATED', 'UNAUTHENTICATED', 'RATE_LIMITED']);

    // Buying limits too, charged by the engine before the reserve script: their buckets are outside
    // the sale's slot, so on a cluster they are not folded into reserve.lua (that call would fail CROSSSLOT).
    const greedy = await t.token('cluster-greedy');
    const burst = t.app.config.RATE_LIMIT_TIER_STANDARD.burst;
    const rs = await Promise.all(Array.from({ length: 205 }, (_, i) => [t.client, otherClient][i % 2].gql(PURCHASE, { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: `greedy-${i}` } }, greedy)));
    const codes = rs.map((r) => r.errors?.[0]?.extensions?.code ?? r.data?.purchase?.code);
    expect(codes.filter((c) => c === 'RATE_LIMITED')).toHaveLength(205 - burst);
    expect(codes.filter((c) => c === 'NOT_ADMITTED')).toHaveLength(burst);
  });

  it('replays draw no token on a cluster either: their charge is handed back', async () => {
    const { itemIds } = await createSale(t, { stock: 10, perUserLimit: 5 });
    const token = await t.token('cluster-replayer');
    const buy = (key: string) => t.client.gql(PURCHASE, { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: key } }, token);
    expect((await buy('first')).data.purchase).toMatchObject({ __typename: 'PurchaseSuccess', replayed: false });
    // More replays than the burst, one after another: each is charged, then given back.
    for (let i = 0; i < 15; i++) expect((await buy('first')).data?.purchase).toMatchObject({ __typename: 'PurchaseSuccess', replayed: true });
    // So 9 of the 10 tokens are left for new attempts, and then none.
    const fresh = [];
    for (let i = 0; i < 10; i++) fresh.push(await buy(`new-${i}`));
    const codes = fresh.map((r) => r.errors?.[0]?.extensions?.code ?? r.data.purchase.__typename);
    expect(codes).toEqual([...Array(4).fill('PurchaseSuccess'), ...Array(5).fill('Rejected'), 'RATE_LIMITED']);
  });
});
