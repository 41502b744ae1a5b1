import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSchema } from 'graphql';
import { SignJWT } from 'jose';
import { eventually, startTestServer, type TestServer } from './support/harness.js';
import { createSale } from './support/fixtures.js';
import { CANCEL_ORDER, CONFIRM, PURCHASE, RELEASE, RESERVE, SALE_ITEM } from './support/operations.js';

/**
 * One customer can neither read nor change another's orders, reservations, waitlist entries or
 * queue ticket, and every admin field is FORBIDDEN to customers. The outcomes are checked from
 * the owner's side too: a refused attempt must have changed nothing.
 */
let t: TestServer;
let alice: string;
let bob: string;
let saleId: string;
let itemId: string;

const ORDER = `query($id: ID!) { order(id: $id) { id status customerId delivery { name } } }`;
const RESERVATION = `query($id: ID!) { reservation(id: $id) { id status } }`;
const MINE = `query { me { id orders { edges { node { id } } } reservations { id } waitlist { id status } } }`;
const JOIN_WAITLIST = `mutation($item: ID!) { joinWaitlist(saleItemId: $item) { __typename ... on WaitlistEntry { id status position } ... on Rejected { code } } }`;
const LEAVE_WAITLIST = `mutation($item: ID!) { leaveWaitlist(saleItemId: $item) { __typename ... on WaitlistEntry { id status } ... on Rejected { code } } }`;
const MY_WAITLIST = `query($sale: ID) { me { waitlist(saleId: $sale) { id status position } } }`;
const codeOf = (r: { errors?: { extensions?: Record<string, unknown> }[] }) => r.errors?.[0]?.extensions?.code;
const delivery = { name: 'Alice A', phone: '+919812345678', addressLine1: '1 Main Road', city: 'Pune', postalCode: '411001', country: 'IN' };

beforeAll(async () => {
  t = await startTestServer('authz', { RATE_LIMIT_ENABLED: 'false' });
  ({ saleId, itemIds: [itemId] } = await createSale(t, { stock: 10, perUserLimit: 5 }));
  [alice, bob] = await Promise.all([t.token('alice'), t.token('bob')]);
});
afterAll(() => t?.close());

describe("another customer's orders", () => {
  it('are invisible and cannot be cancelled; the owner and admins still see them, unchanged', async () => {
    const bought = await t.client.gql(PURCHASE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: 'authz-order', delivery } }, alice);
    const order = bought.data.purchase.order;
    expect(order.customerId).toBe('alice');

    expect((await t.client.gql(ORDER, { id: order.id }, bob)).data.order).toBeNull();
    expect((await t.client.gql(ORDER, { id: order.id })).data.order).toBeNull();
    expect((await t.client.gql(CANCEL_ORDER, { id: order.id }, bob)).data.cancelOrder).toMatchObject({ __typename: 'Rejected', code: 'NOT_FOUND' });
    expect((await t.client.gql(MINE, {}, bob)).data.me.orders.edges).toEqual([]);

    expect((await t.client.gql(ORDER, { id: order.id }, alice)).data.order).toMatchObject({ id: order.id, status: 'CONFIRMED', delivery: { name: 'Alice A' } });
    expect((await t.client.gql(ORDER, { id: order.id }, t.admin)).data.order).toMatchObject({ id: order.id, status: 'CONFIRMED', delivery: { name: 'Alice A' } });
    expect((await t.client.gql(SALE_ITEM, { id: itemId })).data.saleItem).toMatchObject({ sold: 1, reserved: 0 });
  });
});

describe("another customer's reservations", () => {
  it('are invisible and cannot be confirmed or released; the owner can still confirm', async () => {
    const held = await t.client.gql(RESERVE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: 'authz-hold' } }, alice);
    const id = held.data.reserve.reservation.id;

    expect((await t.client.gql(RESERVATION, { id }, bob)).data.reservation).toBeNull();
    expect((await t.client.gql(RESERVATION, { id })).data.reservation).toBeNull();
    expect((await t.client.gql(CONFIRM, { id }, bob)).data.confirmReservation).toMatchObject({ __typename: 'Rejected', code: 'RESERVATION_NOT_FOUND' });
    expect((await t.client.gql(RELEASE, { id }, bob)).data.releaseReservation).toMatchObject({ __typename: 'Rejected', code: 'RESERVATION_NOT_FOUND' });
    expect((await t.client.gql(MINE, {}, bob)).data.me.reservations).toEqual([]);

    expect((await t.client.gql(RESERVATION, { id }, alice)).data.reservation).toEqual({ id, status: 'HELD' });
    expect((await t.client.gql(SALE_ITEM, { id: itemId })).data.saleItem).toMatchObject({ reserved: 1 });
    const confirmed = await t.client.gql(CONFIRM, { id }, alice);
    expect(confirmed.data.confirmReservation).toMatchObject({ __typename: 'PurchaseSuccess', order: { status: 'CONFIRMED' } });
    // Bob's attempt did not count as the confirmation: the order is new, not a replay.
    expect(confirmed.data.confirmReservation.replayed).toBe(false);
  });
});

describe("another customer's waitlist entry", () => {
  it('is invisible, and leaveWaitlist only ever leaves one’s own entry', async () => {
    const { saleId: soldOutSale, itemIds: [item] } = await createSale(t, { stock: 1 });
    const carol = await t.token('carol');
    expect((await t.client.gql(PURCHASE, { input: { saleItemId: item, quantity: 1, idempotencyKey: 'authz-wl' } }, carol)).data.purchase.__typename).toBe('PurchaseSuccess');

    const entry = (await t.client.gql(JOIN_WAITLIST, { item }, alice)).data.joinWaitlist;
    expect(entry).toMatchObject({ __typename: 'WaitlistEntry', status: 'WAITING', position: 1 });

    expect((await t.client.gql(LEAVE_WAITLIST, { item }, bob)).data.leaveWaitlist).toMatchObject({ __typename: 'Rejected', code: 'NOT_ON_WAITLIST' });
    expect((await t.client.gql(MY_WAITLIST, { sale: soldOutSale }, bob)).data.me.waitlist).toEqual([]);
    expect((await t.client.gql(MY_WAITLIST, { sale: soldOutSale }, alice)).data.me.waitlist).toEqual([{ id: entry.id, status: 'WAITING', position: 1 }]);

    // Bob joins behind Alice and leaves: his entry goes, hers stays first.
    const bobs = (await t.client.gql(JOIN_WAITLIST, { item }, bob)).data.joinWaitlist;
    expect(bobs).toMatchObject({ __typename: 'WaitlistEntry', position: 2 });
    expect(bobs.id).not.toBe(entry.id);
    expect((await t.client.gql(LEAVE_WAITLIST, { item }, bob)).data.leaveWaitlist).toMatchObject({ __typename: 'WaitlistEntry', id: bobs.id, status: 'LEFT' });
    expect((await t.client.gql(MY_WAITLIST, { sale: soldOutSale }, alice)).data.me.waitlist).toEqual([{ id: entry.id, status: 'WAITING', position: 1 }]);
  });
});

describe("another customer's queue ticket", () => {
  const JOIN_QUEUE = `mutation($sale: ID!) { joinQueue(saleId: $sale) { __typename ... on QueueTicket { status admissionToken } ... on Rejected { code } } }`;
  const MY_TICKET = `query($sale: ID!) { me { queueTicket(saleId: $sale) { status admissionToken } } }`;

  it('is invisible, and its admission token does not admit anybody else', async () => {
    const { saleId: roomSale, itemIds: [item] } = await createSale(t, { stock: 10, waitingRoom: true, admitPerSecond: 50 });
    expect((await t.client.gql(JOIN_QUEUE, { sale: roomSale }, alice)).data.joinQueue.__typename).toBe('QueueTicket');
    const ticket = await eventually(async () => {
      const mine = (await t.client.gql(MY_TICKET, { sale: roomSale }, alice)).data.me.queueTicket;
      return mine?.status === 'ADMITTED' ? mine : null;
    }, 10_000, 100);

    expect((await t.client.gql(MY_TICKET, { sale: roomSale }, bob)).data.me.queueTicket).toBeNull();
    const borrowed = await t.client.gql(PURCHASE, { input: { saleItemId: item, quantity: 1, idempotencyKey: 'authz-borrowed', admissionToken: ticket.admissionToken } }, bob);
    expect(borrowed.data.purchase).toMatchObject({ __typename: 'Rejected', code: 'NOT_ADMITTED' });
    // Bob joining gets his own ticket; Alice's is untouched and still admits her.
    const bobs = (await t.client.gql(JOIN_QUEUE, { sale: roomSale }, bob)).data.joinQueue;
    expect(bobs.admissionToken ?? null).not.toBe(ticket.admissionToken);
    const own = await t.client.gql(PURCHASE, { input: { saleItemId: item, quantity: 1, idempotencyKey: 'authz-own', admissionToken: ticket.admissionToken } }, alice);
    expect(own.data.purchase.__typename).toBe('PurchaseSuccess');
  });
});

describe('admin fields', () => {
  // Every root field of the contract a customer may call; all others are admin fields.
  const CUSTOMER_FIELDS = new Set([
    'serverTime', 'me', 'product', 'products', 'sale', 'sales', 'saleItem', 'order', 'reservation',
    'register', 'login', 'purchase', 'reserve', 'confirmReservation', 'releaseReservation', 'cancelOrder',
    'joinWaitlist', 'leaveWaitlist', 'joinQueue',
  ]);
  const ADMIN_FIELDS = ['createProduct', 'scheduleSale', 'updateSale', 'pauseSale', 'resumeSale', 'cancelSale', 'adjustStock', 'orders', 'saleSummary', 'stockEvents'];

  it('are exactly the contract root fields outside the customer ones', () => {
    const contract = buildSchema(readFileSync(new URL('../contract/schema.graphql', import.meta.url), 'utf8'));
    const roots = [...Object.keys(contract.getQueryType()!.getFields()), ...Object.keys(contract.getMutationType()!.getFields())];
    expect(roots.filter((f) => !CUSTOMER_FIELDS.has(f)).sort()).toEqual([...ADMIN_FIELDS].sort());
  });

  const sku = `AUTHZ-${process.pid}-${Date.now()}`;
  const documents = (): Record<string, [string, Record<string, unknown>]> => ({
    createProduct: [`mutation($sku: String!) { createProduct(input: { sku: $sku, name: "n", priceCents: 1, currency: "USD" }) { id } }`, { sku }],
    scheduleSale: [
      `mutation($s: DateTime!, $e: DateTime!) { scheduleSale(input: { name: "x", startsAt: $s, endsAt: $e, items: [{ productId: "p", priceCents: 1, stock: 1 }] }) { id } }`,
      { s: new Date(Date.now() + 3600_000).toISOString(), e: new Date(Date.now() + 7200_000).toISOString() },
    ],
    updateSale: [`mutation($id: ID!) { updateSale(id: $id, input: { name: "renamed" }) { id } }`, { id: saleId }],
    pauseSale: [`mutation($id: ID!) { pauseSale(id: $id) { id } }`, { id: saleId }],
    resumeSale: [`mutation($id: ID!) { resumeSale(id: $id) { id } }`, { id: saleId }],
    cancelSale: [`mutation($id: ID!) { cancelSale(id: $id) { id } }`, { id: saleId }],
    adjustStock: [`mutation($id: ID!) { adjustStock(saleItemId: $id, delta: 100, reason: "mine now") { id } }`, { id: itemId }],
    orders: [`query($id: ID!) { orders(saleId: $id) { edges { node { id delivery { name } } } } }`, { id: saleId }],
    saleSummary: [`query($id: ID!) { saleSummary(saleId: $id) { unitsSold revenueCents } }`, { id: saleId }],
    stockEvents: [`query($id: ID!) { stockEvents(saleItemId: $id) { edges { node { id } } } }`, { id: itemId }],
  });

  it('answer FORBIDDEN to customers, UNAUTHENTICATED without a valid token, and change nothing', async () => {
    const before = (await t.client.gql(`query($id: ID!) { sale(id: $id) { name status items { available reserved sold initialStock } } }`, { id: saleId })).data.sale;
    const forged = await new SignJWT({ role: 'admin' }).setProtectedHeader({ alg: 'HS256' }).setSubject('admin-1').setExpirationTime('1h').sign(new TextEncoder().encode('guessed-secret'));
    const docs = documents();
    expect(Object.keys(docs).sort()).toEqual([...ADMIN_FIELDS].sort());
    for (const [field, [doc, variables]] of Object.entries(docs)) {
      const asCustomer = await t.client.gql(doc, variables, bob);
      expect(asCustomer.status, field).toBe(200);
      expect(codeOf(asCustomer), field).toBe('FORBIDDEN');
      expect(asCustomer.data?.[field] ?? null, field).toBeNull();
      expect(codeOf(await t.client.gql(doc, variables)), field).toBe('UNAUTHENTICATED');
      expect(codeOf(await t.client.gql(doc, variables, forged)), field).toBe('UNAUTHENTICATED');
    }
    const after = (await t.client.gql(`query($id: ID!) { sale(id: $id) { name status items { available reserved sold initialStock } } }`, { id: saleId })).data.sale;
    expect(after).toEqual(before);
    const products = await t.client.gql(`query($s: String) { products(search: $s) { edges { node { sku } } } }`, { s: sku });
    expect(products.data.products.edges).toEqual([]);
  });

  it('still answer admins (the refusals above are about the caller, not the documents)', async () => {
    const docs = documents();
    for (const field of ['orders', 'saleSummary', 'stockEvents', 'createProduct'] as const) {
      const [doc, variables] = docs[field];
      const r = await t.client.gql(doc, variables, t.admin);
      expect(r.errors, field).toBeUndefined();
      expect(r.data[field], field).toBeTruthy();
    }
  });
});
