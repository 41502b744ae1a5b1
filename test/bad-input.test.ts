import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import { startTestServer, type TestServer } from './support/harness.js';
import { createSale } from './support/fixtures.js';
import { PURCHASE, RESERVE, SALE_ITEM, SCHEDULE_SALE } from './support/operations.js';

let t: TestServer;
let itemId: string;
let saleId: string;
let productId: string;
let customer: string;
beforeAll(async () => {
  // Rate limits have tests of their own; here one customer's bursts are the point.
  t = await startTestServer('badinput', { RATE_LIMIT_ENABLED: 'false' });
  ({ saleId, itemIds: [itemId] } = await createSale(t, { stock: 5 }));
  customer = await t.token('careful');
  productId = (await t.client.gql(`{ saleItem(id: "${itemId}") { product { id } } }`)).data.saleItem.product.id;
});
afterAll(() => t?.close());

const codeOf = (r: { errors?: { extensions?: Record<string, unknown> }[] }) => r.errors?.[0]?.extensions?.code;

describe('malformed input on mutations that return a union: Rejected INVALID_INPUT with the field', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['a negative quantity', { quantity: -1 }, 'input.quantity'],
    ['a zero quantity', { quantity: 0 }, 'input.quantity'],
    ['an id over 64 characters', { saleItemId: 'x'.repeat(65) }, 'input.saleItemId'],
    ['an empty key', { idempotencyKey: '' }, 'input.idempotencyKey'],
    ['a key over 128 characters', { idempotencyKey: 'k'.repeat(129) }, 'input.idempotencyKey'],
    ['a quantity above the per-user limit', { quantity: 3 }, 'input.quantity'],
  ];
  for (const [what, override, field] of cases) {
    it(`purchase with ${what}`, async () => {
      const r = await t.client.gql(PURCHASE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: 'bad', ...override } }, customer);
      expect(r.status).toBe(200);
      expect(r.data.purchase).toMatchObject({ __typename: 'Rejected', code: 'INVALID_INPUT', field });
    });
  }

  it('reserve with a well-formed id that names nothing is NOT_FOUND', async () => {
    for (const id of ['nothing-here', `${saleId}.nope`, 'nosale.nope']) {
      const r = await t.client.gql(RESERVE, { input: { saleItemId: id, quantity: 1, idempotencyKey: 'nf' } }, customer);
      expect(r.data.reserve).toMatchObject({ __typename: 'Rejected', code: 'NOT_FOUND' });
    }
  });

  it('changes no stock for any of them', async () => {
    expect((await t.client.gql(SALE_ITEM, { id: itemId })).data.saleItem).toMatchObject({ available: 5, reserved: 0, sold: 0 });
  });
});

describe('malformed input elsewhere: GraphQL error BAD_USER_INPUT, never a 500', () => {
  it('rejects ids over 64 characters on queries', async () => {
    for (const q of [`query($id: ID!) { sale(id: $id) { id } }`, `query($id: ID!) { saleItem(id: $id) { id } }`, `query($id: ID!) { product(id: $id) { id } }`]) {
      const r = await t.client.gql(q, { id: 'y'.repeat(65) });
      expect(codeOf(r)).toBe('BAD_USER_INPUT');
    }
  });

  it('returns null for a well-formed id that names nothing', async () => {
    const r = await t.client.gql(`{ sale(id: "unknown") { id } saleItem(id: "unknown.x") { id } product(id: "unknown") { id } }`);
    expect(r.data).toEqual({ sale: null, saleItem: null, product: null });
  });

  it('checks `first` is 1..100 and cursors are ours', async () => {
    for (const first of [0, 101, -5]) expect(codeOf(await t.client.gql(`query($f: Int) { sales(first: $f) { edges { cursor } } }`, { f: first }))).toBe('BAD_USER_INPUT');
    expect(codeOf(await t.client.gql(`{ products(after: "garbage") { edges { cursor } } }`))).toBe('BAD_USER_INPUT');
  });

  const sale = (over: Record<string, unknown>) => ({
    name: 'Bad', startsAt: new Date(Date.now() + 60_000).toISOString(), endsAt: new Date(Date.now() + 120_000).toISOString(),
    items: [{ productId, priceCents: 100, stock: 10 }], ...over,
  });
  const badSales: [string, Record<string, unknown>][] = [
    ['startsAt after endsAt', { startsAt: new Date(Date.now() + 200_000).toISOString() }],
    ['startsAt equal to endsAt', (() => {
      const at = new Date(Date.now() + 120_000).toISOString();
      return { startsAt: at, endsAt: at };
    })()],
    ['no items', { items: [] }],
    ['more than 100 items', { items: Array.from({ length: 101 }, () => ({ productId, priceCents: 1, stock: 1 })) }],
    ['zero stock', { items: [{ productId, priceCents: 1, stock: 0 }] }],
    ['stock above 10,000,000', { items: [{ productId, priceCents: 1, stock: 10_000_001 }] }],
    ['an unknown product', { items: [{ productId: 'no-such-product', priceCents: 1, stock: 1 }] }],
    ['a negative price', { items: [{ productId, priceCents: -1, stock: 1 }] }],
    ['a non-ISO date', { startsAt: 'tomorrow' }],
  ];
  for (const [what, over] of badSales) {
    it(`scheduleSale with ${what}`, async () => {
      const r = await t.client.gql(SCHEDULE_SALE, { input: sale(over) }, t.admin);
      expect(r.status).toBeLessThan(500);
      expect(codeOf(r)).toBe('BAD_USER_INPUT');
      expect(r.data?.scheduleSale ?? null).toBeNull();
    });
  }

  it('answers wrong variable types and over-large ints with BAD_USER_INPUT', async () => {
    for (const quantity of ['abc', 2 ** 40, 1.5, null]) {
      const r = await t.client.gql(PURCHASE, { input: { saleItemId: itemId, quantity, idempotencyKey: 'types' } }, customer);
      expect(r.status).toBeLessThan(500);
      expect(codeOf(r)).toBe('BAD_USER_INPUT');
    }
  });

  it('answers broken JSON and unknown fields without a 500 or a stack trace', async () => {
    const broken = await t.client.raw('{"query": "{ sales { edges ');
    expect(broken.status).toBeLessThan(500);
    const unknown = await t.client.gql(`{ nope }`);
    expect(unknown.status).toBeLessThan(500);
    expect(codeOf(unknown)).toBe('GRAPHQL_VALIDATION_FAILED');
    for (const body of [broken.body, unknown.body]) expect(body).not.toMatch(/\bat .*\.(ts|js):\d+/);
  });
});

describe('auth', () => {
  const admin = `mutation { createProduct(input: { sku: "S-${Date.now()}", name: "n", priceCents: 1, currency: "USD" }) { id } }`;
  const buy = (token?: string) => t.client.gql(PURCHASE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: `auth-${Math.random()}` } }, token);

  it('serves catalogue and sale queries without a token, with me null', async () => {
    const r = await t.client.gql(`query($id: ID!) { me { id } sale(id: $id) { id status } products { edges { node { id } } } serverTime }`, { id: saleId });
    expect(r.errors).toBeUndefined();
    expect(r.data.me).toBeNull();
    expect(r.data.sale).toMatchObject({ id: saleId, status: 'ACTIVE' });
  });

  it('refuses buying without a token: UNAUTHENTICATED', async () => {
    expect(codeOf(await buy())).toBe('UNAUTHENTICATED');
    expect(codeOf(await t.client.gql(RESERVE, { input: { saleItemId: itemId, idempotencyKey: 'x' } }))).toBe('UNAUTHENTICATED');
    expect(codeOf(await t.client.gql(admin))).toBe('UNAUTHENTICATED');
  });

  it('refuses forged, expired, alg-none and malformed tokens: UNAUTHENTICATED', async () => {
    const forged = await new SignJWT({ role: 'admin' }).setProtectedHeader({ alg: 'HS256' }).setSubject('mallory').setExpirationTime('1h').sign(new TextEncoder().encode('not-our-secret'));
    const expired = (await t.tokens.sign('late', 'customer', -60)).token;
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'mallory', role: 'admin', exp: 9e9 })).toString('base64url')}.`;
    for (const token of [forged, expired, none, 'not-a-jwt', 'a.b.c']) {
      expect(codeOf(await buy(token))).toBe('UNAUTHENTICATED');
      expect(codeOf(await t.client.gql(`{ me { id } }`, {}, token))).toBe('UNAUTHENTICATED');
    }
    const noBearer = await t.client.raw(JSON.stringify({ query: '{ me { id } }' }), { authorization: 'Basic abc' });
    expect(JSON.parse(noBearer.body).errors[0].extensions.code).toBe('UNAUTHENTICATED');
  });

  it('refuses admin fields to customers: FORBIDDEN', async () => {
    expect(codeOf(await t.client.gql(admin, {}, customer))).toBe('FORBIDDEN');
    expect(codeOf(await t.client.gql(`query($id: ID!) { saleSummary(saleId: $id) { unitsSold } }`, { id: saleId }, customer))).toBe('FORBIDDEN');
    expect(codeOf(await t.client.gql(`query($id: ID!) { orders(saleId: $id) { edges { cursor } } }`, { id: saleId }, customer))).toBe('FORBIDDEN');
    expect(codeOf(await t.client.gql(`query($id: ID!) { stockEvents(saleItemId: $id) { edges { cursor } } }`, { id: itemId }, customer))).toBe('FORBIDDEN');
    expect(codeOf(await t.client.gql(`mutation($id: ID!) { pauseSale(id: $id) { id } }`, { id: saleId }, customer))).toBe('FORBIDDEN');
  });

  it("hides one customer's orders and reservations from another", async () => {
    const mine = (await buy(customer)).data.purchase.order;
    const other = await t.token('nosy');
    expect((await t.client.gql(`query($id: ID!) { order(id: $id) { id } }`, { id: mine.id }, other)).data.order).toBeNull();
    expect((await t.client.gql(`query($id: ID!) { order(id: $id) { id } }`, { id: mine.id }, customer)).data.order).toEqual({ id: mine.id });
    expect((await t.client.gql(`query($id: ID!) { order(id: $id) { id } }`, { id: mine.id }, t.admin)).data.order).toEqual({ id: mine.id });
    const mineRes = (await t.client.gql(`{ me { reservations { id } } }`, {}, customer)).data.me.reservations;
    expect(mineRes.length).toBeGreaterThan(0);
    expect((await t.client.gql(`query($id: ID!) { reservation(id: $id) { id } }`, { id: mineRes[0].id }, other)).data.reservation).toBeNull();
    expect((await t.client.gql(`{ me { orders { edges { node { id } } } } }`, {}, other)).data.me.orders.edges).toEqual([]);
  });
});
