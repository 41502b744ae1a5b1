import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, lockWaiterSeen, startTestServer, type TestServer } from './support/harness.js';
import { createSale } from './support/fixtures.js';
import { CONFIRM, PURCHASE, RESERVE, SALE_ITEM } from './support/operations.js';
import { Recorder, wsClient } from './support/live.js';

const JOIN = /* GraphQL */ `mutation JoinWaitlist($item: ID!, $q: Int! = 1) { joinWaitlist(saleItemId: $item, quantity: $q) {
  __typename
  ... on WaitlistEntry { id status position quantity offer { id status fromWaitlist } }
  ... on Rejected { code message field available waitlistOpen } } }`;
const LEAVE = /* GraphQL */ `mutation LeaveWaitlist($item: ID!) { leaveWaitlist(saleItemId: $item) {
  __typename ... on WaitlistEntry { status } ... on Rejected { code } } }`;
const MY_WAITLIST = /* GraphQL */ `query MyWaitlist($sale: ID) { me { waitlist(saleId: $sale) { id status position offer { id status fromWaitlist expiresAt } } } }`;

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer('waitlist', { RATE_LIMIT_ENABLED: 'false' });
});
afterAll(() => t?.close());

/**
 * Brings chosen holds' expiry forward to `inMs` from now: the sweeper and the scripts then expire
 * them exactly as they would at the end of holdSeconds, at a moment the test controls, so a loaded
 * machine cannot make the other offers lapse before they are checked.
 */
async function expireSoon(saleId: string, reservationIds: string[], inMs: number) {
  const base = t.app.services.engine.keys.base(saleId);
  const at = Date.now() + inMs;
  for (const id of reservationIds) {
    await t.app.redis.zadd(`${base}holds`, 'XX', at, id);
    await t.app.redis.hset(`${base}res:${id}`, 'expires', at);
  }
  return at;
}

const level = async (itemId: string) => (await t.client.gql(SALE_ITEM, { id: itemId })).data.saleItem;
const mine = async (token: string, saleId: string) => (await t.client.gql(MY_WAITLIST, { sale: saleId }, token)).data.me.waitlist;

describe('waitlist', () => {
  it('offers freed units to the first waitlisted customers, in join order, while a storm of others gets SOLD_OUT; unconfirmed offers lapse to the next', async () => {
    const { saleId, itemIds } = await createSale(t, { stock: 10, holdSeconds: 30, perUserLimit: 2 });
    const item = itemIds[0];
    const early = await t.token('early-bird');
    expect((await t.client.gql(JOIN, { item }, early)).data.joinWaitlist).toMatchObject({ __typename: 'Rejected', code: 'WAITLIST_CLOSED', available: 10 });

    const holders = await Promise.all(Array.from({ length: 10 }, (_, i) => t.token(`holder-${i}`)));
    const holdIds: string[] = [];
    for (const [i, tok] of holders.entries()) {
      const r = (await t.client.gql(RESERVE, { input: { saleItemId: item, idempotencyKey: `h${i}` } }, tok)).data.reserve;
      expect(r.__typename).toBe('ReserveSuccess');
      holdIds.push(r.reservation.id);
    }
    expect(await level(item)).toMatchObject({ available: 0, reserved: 10 });

    const waiters = await Promise.all(Array.from({ length: 50 }, (_, i) => t.token(`waiter-${i}`)));
    for (const [i, tok] of waiters.entries()) {
      const r = (await t.client.gql(JOIN, { item }, tok)).data.joinWaitlist;
      expect(r).toMatchObject({ __typename: 'WaitlistEntry', status: 'WAITING', position: i + 1 });
    }
    // Joining again with the same quantity keeps the first place; another quantity is refused.
    expect((await t.client.gql(JOIN, { item }, waiters[3])).data.joinWaitlist).toMatchObject({ status: 'WAITING', position: 4 });
    expect((await t.client.gql(JOIN, { item, q: 2 }, waiters[3])).data.joinWaitlist).toMatchObject({ __typename: 'Rejected', code: 'ALREADY_ON_WAITLIST' });

    // 1,000 purchases from others, fired across the moment the holds expire.
    const others = await Promise.all(Array.from({ length: 100 }, (_, i) => t.token(`other-${i}`)));
    const storm: Promise<any>[] = [];
    await expireSoon(saleId, holdIds, 600);
    for (let wave = 0; wave < 10; wave++) {
      for (let i = 0; i < 100; i++) storm.push(t.client.gql(PURCHASE, { input: { saleItemId: item, idempotencyKey: `o-${wave}-${i}` } }, others[i]));
      await new Promise((r) => setTimeout(r, 150));
    }
    const outcomes = (await Promise.all(storm)).map((r) => r.data.purchase);
    expect(outcomes).toHaveLength(1000);
    expect(outcomes.filter((o) => o.code !== 'SOLD_OUT')).toEqual([]);

    await eventually(async () => (await level(item)).reserved === 10 && (await mine(waiters[9], saleId))[0]?.status === 'OFFERED', 3000);
    for (let i = 0; i < 10; i++) {
      const [entry] = await mine(waiters[i], saleId);
      expect(entry).toMatchObject({ status: 'OFFERED', position: 0, offer: { status: 'HELD', fromWaitlist: true } });
    }
    for (let i = 10; i < 50; i++) expect((await mine(waiters[i], saleId))[0]).toMatchObject({ status: 'WAITING', position: i - 9 });
    expect(await level(item)).toMatchObject({ available: 0, reserved: 10, sold: 0 });
    const summary = await t.client.gql(`query($id: ID!) { saleSummary(saleId: $id) { waitlistSize } }`, { id: saleId }, t.admin);
    expect(summary.data.saleSummary.waitlistSize).toBe(40);

    // Nobody confirms: the offers lapse and go to the next ten, in order.
    const offers = await Promise.all(waiters.slice(0, 10).map(async (tok) => (await mine(tok, saleId))[0].offer.id));
    await expireSoon(saleId, offers, 0);
    await eventually(async () => (await mine(waiters[19], saleId))[0]?.status === 'OFFERED', 5000);
    // The lapsed entries stay listed, as LAPSED with their expired offer (contract promise 10).
    for (let i = 0; i < 10; i++) expect(await mine(waiters[i], saleId)).toMatchObject([{ status: 'LAPSED', position: 0, offer: { status: 'EXPIRED' } }]);
    for (let i = 10; i < 20; i++) expect((await mine(waiters[i], saleId))[0].status).toBe('OFFERED');
    expect((await mine(waiters[20], saleId))[0]).toMatchObject({ status: 'WAITING', position: 1 });

    // An offer confirmed is an order without idempotency key; the entry is fulfilled.
    const offer = (await mine(waiters[10], saleId))[0].offer;
    const confirmed = (await t.client.gql(CONFIRM, { id: offer.id }, waiters[10])).data.confirmReservation;
    expect(confirmed).toMatchObject({ __typename: 'PurchaseSuccess', order: { status: 'CONFIRMED', quantity: 1 } });
    const order = await t.app.db.selectFrom('orders').selectAll().where('id', '=', confirmed.order.id).executeTakeFirstOrThrow();
    expect(order.idempotency_key).toBeNull();
    expect(await mine(waiters[10], saleId)).toMatchObject([{ status: 'FULFILLED', position: 0, offer: { status: 'CONFIRMED' } }]);

    // Leaving while OFFERED hands the offer to the next entry at once.
    expect((await t.client.gql(LEAVE, { item }, waiters[11])).data.leaveWaitlist).toMatchObject({ __typename: 'WaitlistEntry', status: 'LEFT' });
    expect((await mine(waiters[20], saleId))[0].status).toBe('OFFERED');
    expect(await mine(waiters[11], saleId)).toMatchObject([{ status: 'LEFT', offer: { status: 'RELEASED' } }]);
    expect((await mine(waiters[21], saleId))[0]).toMatchObject({ status: 'WAITING', position: 1 });
    expect((await t.client.gql(LEAVE, { item }, waiters[11])).data.leaveWaitlist).toMatchObject({ __typename: 'Rejected', code: 'NOT_ON_WAITLIST' });
    expect(await level(item)).toMatchObject({ available: 0, reserved: 9, sold: 1 });
  });

  it('lets the head block: a freed unit waits for a head that wants two', async () => {
    const { saleId, itemIds } = await createSale(t, { stock: 2, holdSeconds: 120, perUserLimit: 2 });
    const item = itemIds[0];
    const [a, b, head, second] = await Promise.all(['ha', 'hb', 'head', 'second'].map((s) => t.token(s)));
    const ra = (await t.client.gql(RESERVE, { input: { saleItemId: item, idempotencyKey: 'a' } }, a)).data.reserve.reservation;
    const rb = (await t.client.gql(RESERVE, { input: { saleItemId: item, idempotencyKey: 'b' } }, b)).data.reserve.reservation;
    expect((await t.client.gql(JOIN, { item, q: 2 }, head)).data.joinWaitlist).toMatchObject({ status: 'WAITING', position: 1 });
    expect((await t.client.gql(JOIN, { item, q: 1 }, second)).data.joinWaitlist).toMatchObject({ status: 'WAITING', position: 2 });
    await t.client.gql(`mutation($id: ID!) { releaseReservation(reservationId: $id) { __typename } }`, { id: ra.id }, a);
    // One unit free, the head wants two: nobody gets it, not even the public or the second entry.
    expect(await level(item)).toMatchObject({ available: 1, reserved: 1 });
    expect((await t.client.gql(PURCHASE, { input: { saleItemId: item, idempotencyKey: 'p' } }, await t.token('public'))).data.purchase).toMatchObject({ code: 'SOLD_OUT', waitlistOpen: true });
    expect((await mine(second, saleId))[0].status).toBe('WAITING');
    await t.client.gql(`mutation($id: ID!) { releaseReservation(reservationId: $id) { __typename } }`, { id: rb.id }, b);
    expect((await mine(head, saleId))[0]).toMatchObject({ status: 'OFFERED' });
    expect(await level(item)).toMatchObject({ available: 0, reserved: 2 });
  });

  it('caps the waitlisted quantity by what the customer already holds or bought', async () => {
    const { itemIds } = await createSale(t, { stock: 2, perUserLimit: 2 });
    const tok = await t.token('has-one');
    await t.client.gql(PURCHASE, { input: { saleItemId: itemIds[0], idempotencyKey: 'one' } }, tok);
    await t.client.gql(PURCHASE, { input: { saleItemId: itemIds[0], idempotencyKey: 'x' } }, await t.token('someone'));
    expect((await t.client.gql(JOIN, { item: itemIds[0], q: 2 }, tok)).data.joinWaitlist).toMatchObject({ __typename: 'Rejected', code: 'LIMIT_EXCEEDED' });
    expect((await t.client.gql(JOIN, { item: itemIds[0], q: 1 }, tok)).data.joinWaitlist).toMatchObject({ __typename: 'WaitlistEntry', status: 'WAITING' });
    expect((await t.client.gql(JOIN, { item: itemIds[0], q: 3 }, await t.token('greedy'))).data.joinWaitlist).toMatchObject({ __typename: 'Rejected', code: 'INVALID_INPUT', field: 'quantity' });
  });

  it('offers cancelled orders and added stock to the waitlist first', async () => {
    const { saleId, itemIds } = await createSale(t, { stock: 1 });
    const item = itemIds[0];
    const buyer = await t.token('buyer');
    const order = (await t.client.gql(PURCHASE, { input: { saleItemId: item, idempotencyKey: 'b' } }, buyer)).data.purchase.order;
    const [w1, w2] = await Promise.all([t.token('w1'), t.token('w2')]);
    await t.client.gql(JOIN, { item }, w1);
    await t.client.gql(JOIN, { item }, w2);
    await t.client.gql(`mutation($id: ID!) { cancelOrder(orderId: $id) { __typename } }`, { id: order.id }, buyer);
    expect((await mine(w1, saleId))[0].status).toBe('OFFERED');
    await t.client.gql(`mutation($id: ID!) { adjustStock(saleItemId: $id, delta: 1, reason: "restock") { available } }`, { id: item }, t.admin);
    expect((await mine(w2, saleId))[0].status).toBe('OFFERED');
    expect(await level(item)).toMatchObject({ available: 0, reserved: 2, sold: 0 });
    await eventually(async () => (await t.app.services.ledger.sumOf(item)) === 0);
  });
});

const WAITLIST_CHANGED = /* GraphQL */ `subscription WaitlistChanged($sale: ID!) { waitlistChanged(saleId: $sale) { id status position offer { id status expiresAt } } }`;

describe('waitlistChanged', () => {

  it('pushes the current entry, position moves (throttled), and the offer at once', async () => {
    const { saleId, itemIds } = await createSale(t, { stock: 1, holdSeconds: 3 });
    const item = itemIds[0];
    await t.client.gql(RESERVE, { input: { saleItemId: item, idempotencyKey: 'h' } }, await t.token('wl-holder'));
    const holdEndsAt = Date.now() + 3000;
    const w = await Promise.all(['wl-a', 'wl-b', 'wl-c'].map((s) => t.token(s)));
    for (const tok of w) await t.client.gql(JOIN, { item }, tok);

    const clients = [wsClient(t.app.url, w[0]), wsClient(t.app.url, w[2])];
    const [first, third] = clients.map((c) => new Recorder(c, WAITLIST_CHANGED, { sale: saleId }));
    try {
      await first.waitFor((d: any) => d.waitlistChanged.status === 'WAITING' && d.waitlistChanged.position === 1);
      await third.waitFor((d: any) => d.waitlistChanged.position === 3);

      // Someone ahead leaves: the third customer moves up, told within the ~2 s throttle.
      const leftAt = Date.now();
      await t.client.gql(LEAVE, { item }, w[1]);
      const moved = await third.waitFor((d: any) => d.waitlistChanged.position === 2, 4000);
      expect(moved.at - leftAt).toBeLessThan(3000);

      // The hold expires: the head gets its offer at once, with the reservation to confirm.
      const offered = await first.waitFor((d: any) => d.waitlistChanged.status === 'OFFERED', 6000);
      expect(offered.at - holdEndsAt).toBeLessThan(2000);
      expect((offered.data as any).waitlistChanged.offer).toMatchObject({ status: 'HELD' });
      await third.waitFor((d: any) => d.waitlistChanged.position === 1, 4000);
      expect(first.error).toBeNull();
    } finally {
      for (const c of clients) await c.dispose();
    }
  });

  it('refuses a subscription without a token', async () => {
    const { saleId } = await createSale(t, { stock: 1 });
    const client = wsClient(t.app.url);
    const r = new Recorder(client, WAITLIST_CHANGED, { sale: saleId });
    try {
      await eventually(async () => r.error || r.events.find((e) => e.errors), 4000);
      const code = (r.events.find((e) => e.errors)?.errors?.[0].extensions?.code) ?? (Array.isArray(r.error) ? (r.error as any)[0]?.extensions?.code : undefined);
      expect(code).toBe('UNAUTHENTICATED');
      expect(r.data).toEqual([]);
    } finally {
      await client.dispose();
    }
  });
});

describe('a purchase whose order misses its confirm window', () => {
  it('gives the unit back to the waitlist and tells the customer offered it at once', async () => {
    // The sweeper leaves an overdue CONFIRMING hold alone for 5 s after its deadline, so within
    // this test only the purchase's own release can free the unit and announce the offer.
    const s = await startTestServer('waitlist-late-order', { RATE_LIMIT_ENABLED: 'false', CONFIRM_WINDOW_MS: '500' });
    const locker = new pg.Client({ connectionString: s.app.config.DATABASE_URL });
    const ws = wsClient(s.app.url, await s.token('late-waiter'));
    try {
      const { saleId, itemIds: [item] } = await createSale(s, { stock: 1 });
      // The order's INSERT waits behind a table lock: the last unit is held, so the waitlist opens.
      await locker.connect();
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE orders IN EXCLUSIVE MODE');
      const buying = s.client.gql(PURCHASE, { input: { saleItemId: item, quantity: 1, idempotencyKey: 'late' } }, await s.token('late-buyer'));
      await lockWaiterSeen(locker);
      const waiter = await s.token('late-waiter');
      expect((await s.client.gql(JOIN, { item }, waiter)).data.joinWaitlist).toMatchObject({ __typename: 'WaitlistEntry', status: 'WAITING', position: 1 });
      const watch = new Recorder(ws, WAITLIST_CHANGED, { sale: saleId });
      await watch.waitFor((d: any) => d.waitlistChanged.status === 'WAITING');

      // Past the 500 ms window by PostgreSQL's clock, the INSERT is refused once the lock goes.
      await new Promise((r) => setTimeout(r, 800));
      await locker.query('COMMIT');
      expect((await buying).data.purchase).toMatchObject({ __typename: 'Rejected', code: 'TEMPORARILY_UNAVAILABLE' });
      const answeredAt = Date.now();
      const offered = await watch.waitFor((d: any) => d.waitlistChanged.status === 'OFFERED', 3000);
      expect(offered.at - answeredAt).toBeLessThan(1000);
      expect((offered.data as any).waitlistChanged.offer).toMatchObject({ status: 'HELD' });
      expect((await s.client.gql(MY_WAITLIST, { sale: saleId }, waiter)).data.me.waitlist[0]).toMatchObject({ status: 'OFFERED' });
    } finally {
      await ws.dispose();
      await locker.end().catch(() => undefined);
      await s.close();
    }
  });
});
