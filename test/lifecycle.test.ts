import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { eventually, startTestServer, type TestServer } from './support/harness.js';
import { createSale } from './support/fixtures.js';
import { CANCEL_ORDER, CONFIRM, PURCHASE, RELEASE, RESERVE, SALE, SALE_ITEM } from './support/operations.js';

let t: TestServer;
beforeAll(async () => {
  // Rate limits have tests of their own; here one customer's bursts are the point.
  t = await startTestServer('lifecycle', { RATE_LIMIT_ENABLED: 'false' });
});
afterAll(() => t?.close());

let n = 0;
const buy = async (itemId: string, customer: string, quantity = 1) =>
  (await t.client.gql(PURCHASE, { input: { saleItemId: itemId, quantity, idempotencyKey: `key-${n++}` } }, await t.token(customer))).data.purchase;
const level = async (itemId: string) => (await t.client.gql(SALE_ITEM, { id: itemId })).data.saleItem;
const admin = (query: string, variables: Record<string, unknown>) => t.client.gql(query, variables, t.admin);

describe('sale lifecycle and rejections', () => {
  it('rejects before the start with SALE_NOT_STARTED and a retry time, and shows SCHEDULED', async () => {
    const { saleId, itemIds } = await createSale(t, { startsInMs: 60_000 });
    const r = await buy(itemIds[0], 'early');
    expect(r).toMatchObject({ __typename: 'Rejected', code: 'SALE_NOT_STARTED' });
    expect(r.retryAfterSeconds).toBeGreaterThan(50);
    expect(r.retryAfterSeconds).toBeLessThanOrEqual(60);
    expect((await t.client.gql(SALE, { id: saleId })).data.sale.status).toBe('SCHEDULED');
    expect(await level(itemIds[0])).toMatchObject({ available: 10, reserved: 0, sold: 0 });
  });

  it('rejects after the end with SALE_ENDED and shows ENDED', async () => {
    const { saleId, itemIds } = await createSale(t, { startsInMs: -5000, endsInMs: 800 });
    expect((await buy(itemIds[0], 'ontime')).__typename).toBe('PurchaseSuccess');
    await new Promise((r) => setTimeout(r, 1000));
    expect(await buy(itemIds[0], 'late')).toMatchObject({ __typename: 'Rejected', code: 'SALE_ENDED' });
    expect((await t.client.gql(SALE, { id: saleId })).data.sale.status).toBe('ENDED');
  });

  it('pauses (PAUSED wins over SOLD_OUT), resumes, and cancels (releasing holds)', async () => {
    const { saleId, itemIds } = await createSale(t, { stock: 2 });
    const pause = await admin(`mutation($id: ID!) { pauseSale(id: $id) { id status } }`, { id: saleId });
    expect(pause.data.pauseSale.status).toBe('PAUSED');
    expect(await buy(itemIds[0], 'p1')).toMatchObject({ __typename: 'Rejected', code: 'SALE_PAUSED' });
    const resume = await admin(`mutation($id: ID!) { resumeSale(id: $id) { status } }`, { id: saleId });
    expect(resume.data.resumeSale.status).toBe('ACTIVE');
    const again = await admin(`mutation($id: ID!) { resumeSale(id: $id) { status } }`, { id: saleId });
    expect(again.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');

    const hold = (await t.client.gql(RESERVE, { input: { saleItemId: itemIds[0], quantity: 2, idempotencyKey: 'h1' } }, await t.token('holder'))).data.reserve;
    expect(hold.__typename).toBe('ReserveSuccess');
    expect((await t.client.gql(SALE, { id: saleId })).data.sale.status).toBe('SOLD_OUT');
    await admin(`mutation($id: ID!) { pauseSale(id: $id) { status } }`, { id: saleId });
    expect((await t.client.gql(SALE, { id: saleId })).data.sale.status).toBe('PAUSED');

    const cancel = await admin(`mutation($id: ID!) { cancelSale(id: $id) { status } }`, { id: saleId });
    expect(cancel.data.cancelSale.status).toBe('CANCELLED');
    expect(await buy(itemIds[0], 'c1')).toMatchObject({ __typename: 'Rejected', code: 'SALE_CANCELLED' });
    const res = await t.client.gql(`query($id: ID!) { reservation(id: $id) { status endReason } }`, { id: hold.reservation.id }, await t.token('holder'));
    expect(res.data.reservation).toEqual({ status: 'RELEASED', endReason: 'SALE_CANCELLED' });
    expect(await level(itemIds[0])).toMatchObject({ available: 2, reserved: 0, sold: 0 });
    const confirm = await t.client.gql(CONFIRM, { id: hold.reservation.id }, await t.token('holder'));
    expect(confirm.data.confirmReservation).toMatchObject({ __typename: 'Rejected', code: 'RESERVATION_NOT_HELD' });
    expect(confirm.data.confirmReservation.message).toMatch(/cancelled/);
  });

  it('answers SOLD_OUT with what is left, and LIMIT_EXCEEDED past perUserLimit', async () => {
    const { itemIds } = await createSale(t, { stock: 3, perUserLimit: 2 });
    expect((await buy(itemIds[0], 'a', 2)).__typename).toBe('PurchaseSuccess');
    expect(await buy(itemIds[0], 'a', 1)).toMatchObject({ __typename: 'Rejected', code: 'LIMIT_EXCEEDED', available: 1 });
    expect(await buy(itemIds[0], 'b', 2)).toMatchObject({ __typename: 'Rejected', code: 'SOLD_OUT', available: 1 });
    expect((await buy(itemIds[0], 'b', 1)).__typename).toBe('PurchaseSuccess');
    expect(await buy(itemIds[0], 'c', 1)).toMatchObject({ __typename: 'Rejected', code: 'SOLD_OUT', available: 0, waitlistOpen: true });
    expect(await level(itemIds[0])).toMatchObject({ available: 0, reserved: 0, sold: 3 });
  });

  it('only lets an admin update a sale while SCHEDULED', async () => {
    const scheduled = await createSale(t, { startsInMs: 60_000 });
    const ok = await admin(`mutation($id: ID!, $input: UpdateSaleInput!) { updateSale(id: $id, input: $input) { name perUserLimit } }`, { id: scheduled.saleId, input: { name: 'Renamed', perUserLimit: 1 } });
    expect(ok.data.updateSale).toEqual({ name: 'Renamed', perUserLimit: 1 });
    const active = await createSale(t);
    const late = await admin(`mutation($id: ID!, $input: UpdateSaleInput!) { updateSale(id: $id, input: $input) { name } }`, { id: active.saleId, input: { name: 'Too late' } });
    expect(late.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    expect(late.errors?.[0].message).toMatch(/only be changed while SCHEDULED/);
  });
});

describe('holds', () => {
  it('gives expired holds back within 2 s, and refuses to confirm them', async () => {
    const { itemIds } = await createSale(t, { stock: 5, holdSeconds: 1 });
    const token = await t.token('slow');
    const r = (await t.client.gql(RESERVE, { input: { saleItemId: itemIds[0], quantity: 2, idempotencyKey: 'slow-1' } }, token)).data.reserve;
    expect(r.__typename).toBe('ReserveSuccess');
    expect(await level(itemIds[0])).toMatchObject({ available: 3, reserved: 2 });
    const expiresAt = Date.parse(r.reservation.expiresAt);
    await eventually(async () => (await level(itemIds[0])).available === 5, 4000, 50);
    expect(Date.now() - expiresAt).toBeLessThan(2000);
    const gone = await t.client.gql(CONFIRM, { id: r.reservation.id }, token);
    expect(gone.data.confirmReservation).toMatchObject({ __typename: 'Rejected', code: 'RESERVATION_EXPIRED' });
    const res = await t.client.gql(`query($id: ID!) { reservation(id: $id) { status endReason } }`, { id: r.reservation.id }, token);
    expect(res.data.reservation).toEqual({ status: 'EXPIRED', endReason: 'EXPIRED' });
  });

  it('returns stock on release, and confirms a held reservation into an order', async () => {
    const { itemIds } = await createSale(t, { stock: 4 });
    const token = await t.token('rel');
    const a = (await t.client.gql(RESERVE, { input: { saleItemId: itemIds[0], quantity: 2, idempotencyKey: 'r1' } }, token)).data.reserve;
    expect(await level(itemIds[0])).toMatchObject({ available: 2, reserved: 2 });
    const rel = await t.client.gql(RELEASE, { id: a.reservation.id }, token);
    expect(rel.data.releaseReservation.reservation).toMatchObject({ status: 'RELEASED', endReason: 'CUSTOMER' });
    expect(await level(itemIds[0])).toMatchObject({ available: 4, reserved: 0 });
    const twice = await t.client.gql(RELEASE, { id: a.reservation.id }, token);
    expect(twice.data.releaseReservation).toMatchObject({ __typename: 'Rejected', code: 'RESERVATION_NOT_HELD' });

    const b = (await t.client.gql(RESERVE, { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: 'r2' } }, token)).data.reserve;
    const stranger = await t.client.gql(CONFIRM, { id: b.reservation.id }, await t.token('stranger'));
    expect(stranger.data.confirmReservation).toMatchObject({ __typename: 'Rejected', code: 'RESERVATION_NOT_FOUND' });
    const c = await t.client.gql(CONFIRM, { id: b.reservation.id }, token);
    expect(c.data.confirmReservation).toMatchObject({ __typename: 'PurchaseSuccess', replayed: false, order: { status: 'CONFIRMED', quantity: 1 } });
    const c2 = await t.client.gql(CONFIRM, { id: b.reservation.id }, token);
    expect(c2.data.confirmReservation).toMatchObject({ __typename: 'PurchaseSuccess', replayed: true, order: { id: c.data.confirmReservation.order.id } });
    expect(await level(itemIds[0])).toMatchObject({ available: 3, reserved: 0, sold: 1 });
    const replay = await t.client.gql(RESERVE, { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: 'r2' } }, token);
    expect(replay.data.reserve).toMatchObject({ __typename: 'ReserveSuccess', replayed: true, reservation: { id: b.reservation.id, status: 'CONFIRMED' } });
  });

  it('returns stock when an order is cancelled, once', async () => {
    const { itemIds } = await createSale(t, { stock: 2 });
    const order = (await buy(itemIds[0], 'canceller', 2)).order;
    expect(await level(itemIds[0])).toMatchObject({ available: 0, sold: 2 });
    const other = await t.client.gql(CANCEL_ORDER, { id: order.id }, await t.token('someone-else'));
    expect(other.data.cancelOrder).toMatchObject({ __typename: 'Rejected', code: 'NOT_FOUND' });
    const c = await t.client.gql(CANCEL_ORDER, { id: order.id }, await t.token('canceller'));
    expect(c.data.cancelOrder).toMatchObject({ __typename: 'CancelOrderSuccess', order: { status: 'CANCELLED' } });
    expect(await level(itemIds[0])).toMatchObject({ available: 2, reserved: 0, sold: 0 });
    const again = await t.client.gql(CANCEL_ORDER, { id: order.id }, await t.token('canceller'));
    expect(again.data.cancelOrder).toMatchObject({ __typename: 'Rejected', code: 'ORDER_NOT_CANCELLABLE' });
    expect(await level(itemIds[0])).toMatchObject({ available: 2 });
    // The limit counts only live units: the customer may buy again.
    expect((await buy(itemIds[0], 'canceller', 2)).__typename).toBe('PurchaseSuccess');
  });

  it('lets an admin add and remove available stock, never below what is free', async () => {
    const { itemIds } = await createSale(t, { stock: 3 });
    await buy(itemIds[0], 'adj', 2);
    const add = await admin(`mutation($id: ID!) { adjustStock(saleItemId: $id, delta: 5, reason: "found a box") { available reserved sold } }`, { id: itemIds[0] });
    expect(add.data.adjustStock).toEqual({ available: 6, reserved: 0, sold: 2 });
    const tooMuch = await admin(`mutation($id: ID!) { adjustStock(saleItemId: $id, delta: -7, reason: "oops") { available } }`, { id: itemIds[0] });
    expect(tooMuch.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    const remove = await admin(`mutation($id: ID!) { adjustStock(saleItemId: $id, delta: -6, reason: "damaged") { available } }`, { id: itemIds[0] });
    expect(remove.data.adjustStock.available).toBe(0);
    const ledger = await eventually(async () => {
      const rows = await t.app.db.selectFrom('stock_events').select(['kind', 'delta', 'reason']).where('sale_item_id', '=', itemIds[0]).where('kind', '=', 'ADJUSTED').orderBy('id').execute();
      return rows.length === 2 ? rows : null;
    });
    expect(ledger).toEqual([{ kind: 'ADJUSTED', delta: 5, reason: 'found a box' }, { kind: 'ADJUSTED', delta: -6, reason: 'damaged' }]);
    await eventually(async () => (await t.app.services.ledger.sumOf(itemIds[0])) === 0);
  });
});

describe('PostgreSQL failing during a purchase', () => {
  it('writes no order, releases the hold, keeps stock intact, and lets the key be retried', async () => {
    const { itemIds } = await createSale(t, { stock: 5 });
    const db = t.app.db;
    await sql`create or replace function fail_orders() returns trigger language plpgsql as $$ begin raise exception 'disk full (test)'; end $$`.execute(db);
    await sql`create trigger orders_fail before insert on orders for each row execute function fail_orders()`.execute(db);
    const token = await t.token('unlucky');
    let r;
    try {
      r = (await t.client.gql(PURCHASE, { input: { saleItemId: itemIds[0], quantity: 2, idempotencyKey: 'pg-down' } }, token)).data.purchase;
    } finally {
      await sql`drop trigger orders_fail on orders`.execute(db);
    }
    expect(r).toMatchObject({ __typename: 'Rejected', code: 'TEMPORARILY_UNAVAILABLE' });
    expect(r.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(await db.selectFrom('orders').selectAll().where('customer_id', '=', 'unlucky').execute()).toHaveLength(0);
    expect(await level(itemIds[0])).toMatchObject({ available: 5, reserved: 0, sold: 0 });
    const held = await t.client.gql(`{ me { reservations { status endReason } } }`, {}, token);
    expect(held.data.me.reservations).toEqual([{ status: 'RELEASED', endReason: 'CONFIRM_FAILED' }]);

    const retry = (await t.client.gql(PURCHASE, { input: { saleItemId: itemIds[0], quantity: 2, idempotencyKey: 'pg-down' } }, token)).data.purchase;
    expect(retry).toMatchObject({ __typename: 'PurchaseSuccess', replayed: false });
    expect(await level(itemIds[0])).toMatchObject({ available: 3, sold: 2 });
  });

  it('resolves a confirmation interrupted by a crash: no order means the units come back', async () => {
    const { saleId, itemIds } = await createSale(t, { stock: 3 });
    // What a process that died right after the reserve script leaves behind: a CONFIRMING hold.
    const r = await t.app.services.engine.reserve(saleId, { saleItemId: itemIds[0], customerId: 'crashed', quantity: 1, idempotencyKey: 'crash', mutation: 'purchase' });
    expect(r.ok).toBe(true);
    expect(await level(itemIds[0])).toMatchObject({ available: 2, reserved: 1 });
    await t.app.redis.zadd(`${t.app.services.engine.keys.base(saleId)}confirming`, Date.now() - 10_000, (r as { reservationId: string }).reservationId);
    await eventually(async () => (await level(itemIds[0])).available === 3, 3000);
    expect(await level(itemIds[0])).toMatchObject({ reserved: 0, sold: 0 });
  });
});
