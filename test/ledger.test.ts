import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LedgerDrainer } from '../src/services/ledger.js';
import type { StockEngine } from '../src/services/stock/engine.js';
import { createSale } from './support/fixtures.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { PURCHASE, RELEASE, RESERVE } from './support/operations.js';

// The ledger drainer copies each sale's outbox (stock events) and the holds those events name into
// PostgreSQL. Several drainers may run at once (one per instance), and one may die between copying
// a batch and trimming it from Redis: neither may lose or double a row.

let t: TestServer;
beforeAll(async () => {
  // The slowest background drain, so the drains this test makes itself do most of the work.
  t = await startTestServer('ledger', { DRAIN_INTERVAL_MS: '2000', RATE_LIMIT_ENABLED: 'false' });
});
afterAll(() => t?.close());

describe('ledger drainer', () => {
  it('copies each stock change once and each hold in its latest state, whatever drainers run or die', async () => {
    const { saleId, itemIds: [itemId] } = await createSale(t, { stock: 10, holdSeconds: 300 });
    const buy = (customer: string, mutation: string, input: object) => t.token(customer).then((token) => t.client.gql(mutation, { input }, token));
    const bought = await buy('ledger-buyer', PURCHASE, { saleItemId: itemId, quantity: 2, idempotencyKey: 'b-1' });
    const orderId = bought.data.purchase.order.id as string;
    const held = (await buy('ledger-holder', RESERVE, { saleItemId: itemId, quantity: 1, idempotencyKey: 'h-1' })).data.reserve.reservation.id as string;
    const left = (await buy('ledger-leaver', RESERVE, { saleItemId: itemId, quantity: 1, idempotencyKey: 'l-1' })).data.reserve.reservation.id as string;
    const released = await t.client.gql(RELEASE, { id: left }, await t.token('ledger-leaver'));
    expect(released.data.releaseReservation.__typename).toBe('ReleaseSuccess');
    const order = await t.app.db.selectFrom('orders').select('reservation_id').where('id', '=', orderId).executeTakeFirstOrThrow();
    const boughtHold = order.reservation_id;

    const engine = t.app.services.engine;
    // Dies after each copy, before trimming: every drainer after it meets the same entries again.
    const dying = new LedgerDrainer(t.app.db, Object.assign(Object.create(engine) as StockEngine, { trimOutbox: async () => undefined }), () => undefined);
    await dying.drainSale(saleId);
    await dying.drainSale(saleId);
    await Promise.all([t.app.services.ledger.drainSale(saleId), t.app.services.ledger.drainSale(saleId), dying.drainSale(saleId)]);
    await t.app.services.ledger.drainSale(saleId);
    expect((await engine.readOutbox(saleId, 100)).entries).toEqual([]);

    const events = await t.app.db.selectFrom('stock_events').selectAll().where('sale_id', '=', saleId).where('kind', '!=', 'INITIAL').orderBy('id').execute();
    expect(events.map((e) => [e.kind, e.delta, e.available_after, e.reservation_id])).toEqual([
      ['RESERVED', -2, 8, boughtHold],
      ['CONFIRMED', 0, 8, boughtHold],
      ['RESERVED', -1, 7, held],
      ['RESERVED', -1, 6, left],
      ['RELEASED', 1, 7, left],
    ]);
    expect(new Set(events.map((e) => e.stream_id)).size).toBe(events.length);
    expect(await t.app.services.ledger.sumOf(itemId)).toBe(7);

    const rows = await t.app.db.selectFrom('reservations').selectAll().where('sale_id', '=', saleId).execute();
    expect(rows).toHaveLength(3);
    const row = (id: string) => rows.find((r) => r.id === id)!;
    for (const [id, customer, quantity, status, endReason, key] of [
      [boughtHold, 'ledger-buyer', 2, 'CONFIRMED', null, 'b-1'],
      [held, 'ledger-holder', 1, 'HELD', null, 'h-1'],
      [left, 'ledger-leaver', 1, 'RELEASED', 'CUSTOMER', 'l-1'],
    ] as const) {
      const live = (await engine.reservation(saleId, id))!;
      expect(row(id)).toMatchObject({ sale_item_id: itemId, customer_id: customer, quantity, status, end_reason: endReason, idempotency_key: key, from_waitlist: false });
      // Times to the millisecond, as Redis' clock gave them; only ended holds have an end.
      expect(row(id).created_at.getTime()).toBe(live.createdAt);
      expect(row(id).expires_at.getTime()).toBe(live.expiresAt);
      expect(row(id).ended_at === null).toBe(status !== 'RELEASED');
    }
    // A stock event is stamped with the time of the script that made it, as its hold is.
    expect(events[0].at.getTime()).toBe(row(boughtHold).created_at.getTime());
  });

  it('a drainer that read events before a rebuild and copies them after it adds nothing: the rebuild counted without them', async () => {
    const { saleId, itemIds: [itemId] } = await createSale(t, { stock: 3, holdSeconds: 300 });
    const engine = t.app.services.engine;
    await t.app.services.ledger.drainSale(saleId);
    const held = await t.token('late-holder').then((token) => t.client.gql(RESERVE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: 'late-1' } }, token));
    expect(held.data.reserve.__typename).toBe('ReserveSuccess');
    // A drainer reads the hold's event from the Redis of the moment, then stalls...
    const read = await engine.readOutbox(saleId, 100);
    expect(read.entries.map((e) => e.kind)).toEqual(['RESERVED']);
    const late = new LedgerDrainer(t.app.db, Object.assign(Object.create(engine) as StockEngine, { readOutbox: async () => read }), () => undefined);
    // ...that Redis is replaced by a copy without the hold (its event and state gone), which is rebuilt.
    await t.app.redis.xdel(engine.keys.outbox(saleId), ...read.entries.map((e) => e.streamId));
    await t.app.redis.del(engine.keys.meta(saleId));
    const sale = await t.app.db.selectFrom('sales').selectAll().where('id', '=', saleId).executeTakeFirstOrThrow();
    expect(await t.app.services.recovery.repair(sale, 'test')).toBe('initialised');
    expect(await t.app.services.ledger.sumOf(itemId)).toBe(3);
    await late.drainSale(saleId);
    await t.app.services.ledger.drainSale(saleId);
    expect(await t.app.services.ledger.sumOf(itemId)).toBe(3);
    const reservation = await t.app.db.selectFrom('reservations').select('id').where('sale_id', '=', saleId).execute();
    expect(reservation).toEqual([]);
  });
});
