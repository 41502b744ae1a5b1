import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSale } from './support/fixtures.js';
import { eventually, startTestServer, type TestServer } from './support/harness.js';
import { CANCEL_ORDER, PURCHASE, RELEASE, RESERVE, SALE } from './support/operations.js';

// Sweepers, ledger drainers, status watchers and recovery visit every sale in the live set on every
// tick; an ended, idle sale leaves it, so their work follows the sales that can still change.

const RETIRE_AFTER_MS = 1000;
let t: TestServer;

beforeAll(async () => {
  t = await startTestServer('retire', { SALE_RETIRE_AFTER_MS: String(RETIRE_AFTER_MS), RATE_LIMIT_ENABLED: 'false' });
});
afterAll(() => t?.close());

const isLive = async (saleId: string) => (await t.app.services.engine.liveSaleIds()).includes(saleId);
const levels = async (saleId: string) => (await t.client.gql(SALE, { id: saleId })).data.sale;
const ledgerSum = async (itemId: string) =>
  Number((await sql<{ s: string }>`SELECT coalesce(sum(delta), 0) AS s FROM stock_events WHERE sale_item_id = ${itemId}`.execute(t.app.db)).rows[0].s);

describe('retiring ended sales from the live set', () => {
  it('retires an ended, idle sale; it still reads; a later cancellation brings it back until its stock event is in the ledger', async () => {
    const { saleId, itemIds: [itemId] } = await createSale(t, { stock: 5, endsInMs: 1500 });
    const token = await t.token('retiree');
    const bought = await t.client.gql(PURCHASE, { input: { saleItemId: itemId, quantity: 2, idempotencyKey: 'r-1' } }, token);
    const orderId = bought.data.purchase.order.id as string;
    expect(await isLive(saleId)).toBe(true);

    await eventually(async () => !(await isLive(saleId)), 6000, 100);
    expect(await levels(saleId)).toMatchObject({ status: 'ENDED', available: 3, items: [{ sold: 2, reserved: 0, available: 3 }] });
    // Recovery does not bring a retired sale back.
    await t.app.services.recovery.checkAll();
    expect(await isLive(saleId)).toBe(false);

    // Cancelling after the retirement writes a stock event: the sale is live again until it is drained.
    const cancelled = await t.client.gql(CANCEL_ORDER, { id: orderId }, token);
    expect(cancelled.data.cancelOrder).toMatchObject({ __typename: 'CancelOrderSuccess' });
    expect(await isLive(saleId)).toBe(true);
    await eventually(async () => (await ledgerSum(itemId)) === 5, 5000, 100);
    expect(await levels(saleId)).toMatchObject({ available: 5, items: [{ sold: 0, available: 5 }] });
    await eventually(async () => !(await isLive(saleId)), 6000, 100);
  });

  it('keeps an ended sale live while it still holds units, and retires it once they are released', async () => {
    const { saleId, itemIds: [itemId] } = await createSale(t, { stock: 5, endsInMs: 1500, holdSeconds: 600 });
    const token = await t.token('holder');
    const held = await t.client.gql(RESERVE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: 'h-1' } }, token);
    const reservationId = held.data.reserve.reservation.id as string;
    // Well past its end and the retirement delay, with several sweeps: the hold keeps it live.
    await new Promise((r) => setTimeout(r, 1500 + RETIRE_AFTER_MS + 1500));
    expect(await isLive(saleId)).toBe(true);
    expect((await t.client.gql(RELEASE, { id: reservationId }, token)).data.releaseReservation.__typename).toBe('ReleaseSuccess');
    await eventually(async () => !(await isLive(saleId)), 6000, 100);
  });
});
