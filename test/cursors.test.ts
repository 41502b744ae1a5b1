import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSale } from './support/fixtures.js';
import { startTestServer, type TestServer } from './support/harness.js';

// Issue 16 (i): keyset cursors must be exact. PostgreSQL keeps timestamps in microseconds, a JS Date
// in milliseconds: a cursor that carries the creation time through a Date repeats (ascending) or
// skips (descending) every row that shares the last row's millisecond. Here hundreds of rows share
// one millisecond, many share one microsecond too (the id breaks those ties), and every list is
// paged through end to end: each row must come exactly once, in the order PostgreSQL sorts them.
// A cursor the server did not give out for that list is the client's mistake: BAD_USER_INPUT.

let t: TestServer;
let customer: string;
let saleA: string;
let saleB: string;
let saleC: string;
let itemA: string;
let itemB: string;
const CUSTOMER = 'cursor-pager';

/** A fixed millisecond plus some microseconds: `at(0)`..`at(999)` all lie in one millisecond. */
const at = (micros: number) => sql`(timestamptz '2026-03-01 10:00:00.123+00' + ${micros}::int * interval '1 microsecond')`;
const rid = () => randomBytes(12).toString('base64url');

const codeOf = (r: { errors?: { extensions?: Record<string, unknown> }[] }) => r.errors?.[0]?.extensions?.code;
const ids = async (q: { execute(): Promise<{ id: string | number }[]> }) => (await q.execute()).map((r) => String(r.id));

interface Conn { edges: { cursor: string; node: { id: string } }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } }

/**
 * Pages through a connection with `first`, following endCursor; returns every id in order. Stops
 * after `atMost` ids, so a cursor that keeps going back answers with its repeats instead of looping.
 */
async function pageAll(query: string, vars: Record<string, unknown>, pick: (data: any) => Conn, token: string, first: number, atMost = 1000): Promise<string[]> {
  const seen: string[] = [];
  let after: string | null = null;
  while (seen.length <= atMost) {
    const r = await t.client.gql(query, { ...vars, first, after }, token);
    expect(r.errors, r.body).toBeUndefined();
    const c = pick(r.data);
    expect(c.edges.length).toBeLessThanOrEqual(first);
    seen.push(...c.edges.map((e) => e.node.id));
    if (!c.pageInfo.hasNextPage) return seen;
    expect(c.pageInfo.endCursor).toBe(c.edges[c.edges.length - 1].cursor);
    after = c.pageInfo.endCursor;
  }
  return seen;
}

const ADMIN_ORDERS = `query($saleId: ID!, $status: OrderStatus, $first: Int, $after: String) {
  orders(saleId: $saleId, status: $status, first: $first, after: $after) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }`;
const MY_ORDERS = `query($saleId: ID, $first: Int, $after: String) {
  me { orders(saleId: $saleId, first: $first, after: $after) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } } }`;
const SALES = `query($first: Int, $after: String) { sales(first: $first, after: $after) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }`;
const PRODUCTS = `query($search: String, $first: Int, $after: String) {
  products(search: $search, first: $first, after: $after) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }`;
const STOCK_EVENTS = `query($saleItemId: ID!, $first: Int, $after: String) {
  stockEvents(saleItemId: $saleItemId, first: $first, after: $after) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }`;

beforeAll(async () => {
  t = await startTestServer('cursors', { RATE_LIMIT_ENABLED: 'false' }, { captureLogs: 'warn' });
  customer = await t.token(CUSTOMER);
  ({ saleId: saleA, itemIds: [itemA] } = await createSale(t, { stock: 1000, perUserLimit: 1000 }));
  ({ saleId: saleB, itemIds: [itemB] } = await createSale(t, { stock: 1000, perUserLimit: 1000 }));
  const { saleId: c, itemIds: [itemC] } = await createSale(t, { stock: 1000, perUserLimit: 1000 });
  saleC = c;
  const db = t.app.db;

  // 300 orders of sale A in one millisecond: 37 distinct microseconds, so about 8 orders share each.
  // Every third one is the pager's; every eleventh is cancelled. 40 more of the pager's in sale B.
  const order = (saleId: string, itemId: string, i: number, customerId: string, status: 'CONFIRMED' | 'CANCELLED') => ({
    id: rid(), sale_id: saleId, sale_item_id: itemId, reservation_id: `${saleId}.${rid()}`, customer_id: customerId,
    quantity: 1, unit_price_cents: 100, total_cents: 100, status, payment_method: 'CASH_ON_DELIVERY', idempotency_key: null,
    delivery_enc: null, created_at: at(i % 37), cancelled_at: null,
  });
  const rows = [];
  for (let i = 0; i < 300; i++) rows.push(order(saleA, itemA, i, i % 3 === 0 ? CUSTOMER : `buyer-${i}`, i % 11 === 0 ? 'CANCELLED' : 'CONFIRMED'));
  for (let i = 0; i < 40; i++) rows.push(order(saleB, itemB, i * 7, CUSTOMER, 'CONFIRMED'));
  // Sale C as in the issue: 300 orders as a storm writes them, four in each millisecond.
  for (let i = 0; i < 300; i++) rows.push({ ...order(saleC, itemC, 0, `storm-${i}`, 'CONFIRMED'), created_at: at(i * 250) });
  await db.insertInto('orders').values(rows as any).execute();

  // 30 more sales (through the API, so Redis knows them), all starting in that same millisecond.
  const sales = [saleA, saleB];
  for (let i = 0; i < 30; i++) sales.push((await createSale(t)).saleId);
  sales.push(saleC);
  for (const [i, id] of sales.entries()) await db.updateTable('sales').set({ starts_at: at(i % 9) as any }).where('id', '=', id).execute();

  // 45 products with one name (and 5 of another), so only the id orders them.
  await db.insertInto('products').values(Array.from({ length: 50 }, (_, i) => ({
    id: rid(), sku: `same-${i}-${rid()}`, name: i < 45 ? 'Same name' : 'Same Name', description: null, price_cents: 1, currency: 'USD', image_url: null,
  }))).execute();

  // 60 stock events of item A at one instant.
  await db.insertInto('stock_events').values(Array.from({ length: 60 }, (_, i) => ({
    sale_id: saleA, sale_item_id: itemA, stream_id: `9999999999999-${i}`, kind: 'ADJUSTED', delta: 0, available_after: 1000,
    customer_id: null, reservation_id: null, reason: 'cursor test', at: at(5) as any,
  }))).execute();
});
afterAll(() => t?.close());

describe('keyset cursors are exact when hundreds of rows share a millisecond', () => {
  it('admin orders(saleId, status: CONFIRMED, first: 100) through a 300-order sale, four orders a millisecond: each once, oldest first', async () => {
    const expected = await ids(t.app.db.selectFrom('orders').select('id').where('sale_id', '=', saleC).where('status', '=', 'CONFIRMED').orderBy('created_at').orderBy('id'));
    expect(expected.length).toBe(300);
    const got = await pageAll(ADMIN_ORDERS, { saleId: saleC, status: 'CONFIRMED' }, (d) => d.orders, t.admin, 100);
    expect(got.length).toBe(300);
    expect(got).toEqual(expected);
  });

  it('the same through a 300-order sale all in one millisecond', async () => {
    const expected = await ids(t.app.db.selectFrom('orders').select('id').where('sale_id', '=', saleA).where('status', '=', 'CONFIRMED').orderBy('created_at').orderBy('id'));
    expect(expected.length).toBe(272);
    const got = await pageAll(ADMIN_ORDERS, { saleId: saleA, status: 'CONFIRMED' }, (d) => d.orders, t.admin, 100);
    expect(got.length).toBe(expected.length);
    expect(got).toEqual(expected);
  });

  it('admin orders(saleId) in pages of 7, with and without a status', async () => {
    for (const status of [null, 'CONFIRMED', 'CANCELLED']) {
      let q = t.app.db.selectFrom('orders').select('id').where('sale_id', '=', saleA).orderBy('created_at').orderBy('id');
      if (status) q = q.where('status', '=', status as 'CONFIRMED');
      const expected = await ids(q);
      expect(await pageAll(ADMIN_ORDERS, { saleId: saleA, status }, (d) => d.orders, t.admin, 7)).toEqual(expected);
    }
  });

  it('me { orders } in pages of 7, newest first, in all sales and in one', async () => {
    for (const saleId of [null, saleA, saleB]) {
      let q = t.app.db.selectFrom('orders').select('id').where('customer_id', '=', CUSTOMER).orderBy('created_at', 'desc').orderBy('id', 'desc');
      if (saleId) q = q.where('sale_id', '=', saleId);
      const expected = await ids(q);
      expect(expected.length).toBe(saleId === saleB ? 40 : saleId === saleA ? 100 : 140);
      expect(await pageAll(MY_ORDERS, { saleId }, (d) => d.me.orders, customer, 7)).toEqual(expected);
    }
  });

  it('sales in pages of 7, latest start first', async () => {
    const expected = await ids(t.app.db.selectFrom('sales').select('id').orderBy('starts_at', 'desc').orderBy('id', 'desc'));
    expect(expected.length).toBe(33);
    expect(await pageAll(SALES, {}, (d) => d.sales, customer, 7)).toEqual(expected);
  });

  it('products in pages of 7, by name then id, also when searching', async () => {
    const expected = await ids(t.app.db.selectFrom('products').select('id').orderBy('name').orderBy('id'));
    expect(expected.length).toBe(83);
    expect(await pageAll(PRODUCTS, {}, (d) => d.products, customer, 7)).toEqual(expected);
    const same = await ids(t.app.db.selectFrom('products').select('id').where('name', 'ilike', '%same%').orderBy('name').orderBy('id'));
    expect(same.length).toBe(50);
    expect(await pageAll(PRODUCTS, { search: 'same' }, (d) => d.products, customer, 7)).toEqual(same);
  });

  it('stockEvents in pages of 7, in ledger order', async () => {
    const expected = await ids(t.app.db.selectFrom('stock_events').select('id').where('sale_item_id', '=', itemA).orderBy('id'));
    expect(expected.length).toBeGreaterThanOrEqual(60);
    expect(await pageAll(STOCK_EVENTS, { saleItemId: itemA }, (d) => d.stockEvents, t.admin, 7)).toEqual(expected);
  });

  it('an edge cursor in the middle of a page resumes right after that edge', async () => {
    const first = await t.client.gql(ADMIN_ORDERS, { saleId: saleA, first: 20 }, t.admin);
    const edges = first.data.orders.edges as Conn['edges'];
    const next = await t.client.gql(ADMIN_ORDERS, { saleId: saleA, first: 10, after: edges[4].cursor }, t.admin);
    expect(next.data.orders.edges.map((e: { node: { id: string } }) => e.node.id)).toEqual(edges.slice(5, 15).map((e) => e.node.id));
  });
});

describe('a cursor the server did not give out for that list is BAD_USER_INPUT, never INTERNAL_SERVER_ERROR, and not logged as an error', () => {
  const b64 = (s: string) => Buffer.from(s).toString('base64url');
  /** A cursor this list gave out, with the last node's id swapped for one that names no row. */
  const forged = (cursor: string, nodeId: string, missing: string) => b64(JSON.stringify(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'), (_k, v) => (v === nodeId ? missing : v))));
  const lists: { name: string; query: string; vars: () => Record<string, unknown>; pick: (d: any) => Conn; token: () => string; missing: string; foreign: () => Promise<string> }[] = [
    {
      name: 'orders(saleId)', query: ADMIN_ORDERS, vars: () => ({ saleId: saleA }), pick: (d) => d.orders, token: () => t.admin, missing: 'no-such-order',
      // An order of another sale.
      foreign: async () => (await t.client.gql(ADMIN_ORDERS, { saleId: saleB, first: 1 }, t.admin)).data.orders.pageInfo.endCursor,
    },
    {
      name: 'me { orders }', query: MY_ORDERS, vars: () => ({}), pick: (d) => d.me.orders, token: () => customer, missing: 'no-such-order',
      // Somebody else's order (of a sale the customer bought in too).
      foreign: async () => {
        const mine = new Set(await ids(t.app.db.selectFrom('orders').select('id').where('customer_id', '=', CUSTOMER)));
        const edges = (await t.client.gql(ADMIN_ORDERS, { saleId: saleA, first: 10 }, t.admin)).data.orders.edges as Conn['edges'];
        return edges.find((e) => !mine.has(e.node.id))!.cursor;
      },
    },
    {
      name: 'sales', query: SALES, vars: () => ({}), pick: (d) => d.sales, token: () => customer, missing: 'no-such-sale',
      foreign: async () => (await t.client.gql(PRODUCTS, { first: 1 })).data.products.pageInfo.endCursor,
    },
    {
      name: 'products', query: PRODUCTS, vars: () => ({}), pick: (d) => d.products, token: () => customer, missing: 'no-such-product',
      foreign: async () => (await t.client.gql(SALES, { first: 1 })).data.sales.pageInfo.endCursor,
    },
    {
      name: 'stockEvents', query: STOCK_EVENTS, vars: () => ({ saleItemId: itemA }), pick: (d) => d.stockEvents, token: () => t.admin, missing: '922337203685477580',
      // An event of another item.
      foreign: async () => (await t.client.gql(STOCK_EVENTS, { saleItemId: itemB, first: 1 }, t.admin)).data.stockEvents.pageInfo.endCursor,
    },
  ];

  for (const list of lists) {
    it(`on ${list.name}`, async () => {
      const before = t.logs.length;
      const page = await t.client.gql(list.query, { ...list.vars(), first: 2 }, list.token());
      expect(page.errors, page.body).toBeUndefined();
      const { edges } = list.pick(page.data);
      const good = edges[1].cursor;
      const nodeId = edges[1].node.id;
      const foreign = await list.foreign();
      const bad: [string, string][] = [
        ['garbage', 'garbage'],
        ['empty', ''],
        ['not base64 JSON', b64('{not json')],
        ['JSON of another shape', b64(JSON.stringify({ id: nodeId }))],
        ['a JSON array of numbers', b64('[1,2]')],
        ['a JSON array of three', b64(JSON.stringify(['x', nodeId, 'y']))],
        ['an old-style pair with a nonsense sort key', b64(JSON.stringify(['not a time', nodeId]))],
        ['an old-style pair with a nonsense id', b64(JSON.stringify([Date.now(), 'not-an-id-\u0000']))],
        ['an id over 64 characters', forged(good, nodeId, 'x'.repeat(65))],
        ['a NUL in the id', forged(good, nodeId, 'a\u0000b')],
        ['a well-formed cursor naming no row', forged(good, nodeId, list.missing)],
        ['a cursor of another list', foreign],
      ];
      for (const [what, after] of bad) {
        const r = await t.client.gql(list.query, { ...list.vars(), first: 5, after }, list.token());
        expect({ what, code: codeOf(r) }, r.body).toEqual({ what, code: 'BAD_USER_INPUT' });
      }
      // The good cursor still works.
      const r = await t.client.gql(list.query, { ...list.vars(), first: 5, after: good }, list.token());
      expect(r.errors, r.body).toBeUndefined();
      await new Promise((res) => setTimeout(res, 50));
      expect(t.logs.slice(before).filter((l) => l.level >= 50)).toEqual([]);
    });
  }

  it('stockEvents: a non-numeric or out-of-range event id in a cursor', async () => {
    const page = await t.client.gql(STOCK_EVENTS, { saleItemId: itemA, first: 1 }, t.admin);
    const { cursor, node } = page.data.stockEvents.edges[0];
    for (const missing of ['abc', '-1', '1.5', '99999999999999999999999', ' 1']) {
      const r = await t.client.gql(STOCK_EVENTS, { saleItemId: itemA, first: 5, after: forged(cursor, node.id, missing) }, t.admin);
      expect({ missing, code: codeOf(r) }).toEqual({ missing, code: 'BAD_USER_INPUT' });
    }
  });
});
