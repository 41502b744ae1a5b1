import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { sql } from 'kysely';
import pg from 'pg';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newChildId, newId } from '../src/services/ids.js';
import { eventually, startTestServer, type TestServer } from './support/harness.js';
import { createSale } from './support/fixtures.js';
import { CANCEL_ORDER, CONFIRM, PURCHASE, RELEASE, RESERVE, SALE, SALE_ITEM } from './support/operations.js';
import { Recorder, wsClient } from './support/live.js';
import { freePort, PgProxy } from './support/processes.js';
import { redisAnswering } from './support/redis-process.js';
import pino from 'pino';
import { Registry } from 'prom-client';
import { StockRecovery } from '../src/services/stock-recovery.js';
import type { StockEngine } from '../src/services/stock/engine.js';

/**
 * Issue 16's regressions (a–g), each on real Redis and PostgreSQL: interleavings and partial
 * failures that sold a unit twice, lost one, bricked a sale or hid a waitlist ending. A purchase
 * "between commit and confirm" is made with the service's own parts (the reserve script, the order
 * insert) and then left, exactly as an instance killed there leaves it.
 */
const JOIN_WAITLIST = /* GraphQL */ `mutation($item: ID!) { joinWaitlist(saleItemId: $item) {
  __typename ... on WaitlistEntry { id status position offer { id status } } ... on Rejected { code } } }`;
const MY_WAITLIST = /* GraphQL */ `query($sale: ID) { me { waitlist(saleId: $sale) { id status position offer { id status } } } }`;
const WAITLIST_CHANGED = /* GraphQL */ `subscription($sale: ID!) { waitlistChanged(saleId: $sale) { id status position offer { id status } } }`;
const ADJUST = /* GraphQL */ `mutation($item: ID!, $delta: Int!) { adjustStock(saleItemId: $item, delta: $delta, reason: "test") { id } }`;
const CANCEL_SALE = /* GraphQL */ `mutation($id: ID!) { cancelSale(id: $id) { id status } }`;
const JOIN_QUEUE = /* GraphQL */ `mutation($saleId: ID!) { joinQueue(saleId: $saleId) { __typename ... on QueueTicket { status } } }`;
const MY_TICKET = /* GraphQL */ `query($saleId: ID!) { me { queueTicket(saleId: $saleId) { status admissionToken } } }`;

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer('integrity', { RATE_LIMIT_ENABLED: 'false', RECOVERY_INTERVAL_MS: '200', CONFIRM_WINDOW_MS: '2000' });
});
afterAll(() => t?.close());

let keyN = 0;
const buy = async (item: string, who: string, key = `k-${keyN++}`) =>
  (await t.client.gql(PURCHASE, { input: { saleItemId: item, quantity: 1, idempotencyKey: key } }, await t.token(who))).data?.purchase;
const level = async (item: string) => (await t.client.gql(SALE_ITEM, { id: item })).data.saleItem;

/** CONFIRMED units of an item in PostgreSQL, counted from the orders themselves. */
async function confirmedUnits(item: string): Promise<number> {
  const r = await t.app.db.selectFrom('orders').select(sql<string>`coalesce(sum(quantity), 0)`.as('n')).where('sale_item_id', '=', item).where('status', '=', 'CONFIRMED').executeTakeFirstOrThrow();
  return Number(r.n);
}

/**
 * A purchase whose order committed and whose instance died before Redis confirmed it: the reserve
 * script's CONFIRMING hold and the committed order row, nothing after.
 */
async function committedNotConfirmed(saleId: string, item: string, customer: string) {
  const { engine, orders } = t.app.services;
  const r = await engine.reserve(saleId, { saleItemId: item, customerId: customer, quantity: 1, idempotencyKey: `dead-${keyN++}`, mutation: 'purchase' });
  if (r.ok !== true) throw new Error(`reserve refused: ${JSON.stringify(r)}`);
  const orderId = newId();
  const outcome = await orders.insert({
    id: orderId, saleId, saleItemId: item, reservationId: r.reservationId, customerId: customer, quantity: 1, unitPriceCents: 19_999,
    idempotencyKey: null, deliveryEnc: null, deadline: new Date(r.createdAt + engine.confirmWindowMs), liveEpoch: r.epoch, liveVersion: r.version,
  });
  if (!outcome.ok) throw new Error(`insert refused: ${JSON.stringify(outcome)}`);
  return { reservationId: r.reservationId, orderId };
}

describe('a. a hold whose order committed is never released by its customer', () => {
  it('answers RESERVATION_NOT_HELD, keeps the unit sold, and the next buyer gets SOLD_OUT', async () => {
    const { saleId, itemIds: [item] } = await createSale(t, { stock: 1 });
    const { reservationId } = await committedNotConfirmed(saleId, item, 'a-buyer');
    // The customer sees the hold as HELD and tries to release it.
    const released = (await t.client.gql(RELEASE, { id: reservationId }, await t.token('a-buyer'))).data.releaseReservation;
    expect(released).toMatchObject({ __typename: 'Rejected', code: 'RESERVATION_NOT_HELD' });
    const adminReleased = (await t.client.gql(RELEASE, { id: reservationId }, t.admin)).data.releaseReservation;
    expect(adminReleased).toMatchObject({ __typename: 'Rejected', code: 'RESERVATION_NOT_HELD' });
    expect(await buy(item, 'a-other')).toMatchObject({ __typename: 'Rejected', code: 'SOLD_OUT' });
    // The sweeper resolves the hold against PostgreSQL: the order confirms it.
    await eventually(async () => (await level(item)).sold === 1, 12_000, 100);
    expect(await level(item)).toMatchObject({ available: 0, reserved: 0, sold: 1 });
    expect(await confirmedUnits(item)).toBe(1);
  });
});

describe('b. part of a sale\'s keys lost while a purchase commits', () => {
  it('never recreates part of a sale: the sale is rebuilt whole and sells on, never NOT_FOUND or a negative count', async () => {
    const { saleId, itemIds: [item] } = await createSale(t, { stock: 200, perUserLimit: 1 });
    for (let i = 0; i < 20; i++) expect(await buy(item, `b-early-${i}`)).toMatchObject({ __typename: 'PurchaseSuccess' });
    const { reservationId, orderId } = await committedNotConfirmed(saleId, item, 'b-committing');
    const base = t.app.services.engine.keys.base(saleId);
    await t.app.redis.del(`${base}meta`, `${base}stock`);
    // The committing purchase's confirm finds the state partial: it writes nothing.
    const confirmed = await t.app.services.engine.confirm(saleId, reservationId, orderId);
    expect(confirmed).toMatchObject({ ok: false, status: 'NO_SALE' });
    expect(await t.app.redis.exists(`${base}meta`)).toBe(0);

    // Buyers meanwhile: a typed retry, never NOT_FOUND; the sale sells again within 10 s.
    const answers: string[] = [];
    const started = Date.now();
    await eventually(async () => {
      const r = await buy(item, `b-late-${answers.length}`);
      answers.push(r.__typename === 'Rejected' ? r.code : r.__typename);
      return r.__typename === 'PurchaseSuccess';
    }, 10_000, 100).catch((err) => {
      throw new Error(`${err.message}; answers: ${answers.join(',')}`);
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(answers.filter((a) => a !== 'TEMPORARILY_UNAVAILABLE' && a !== 'PurchaseSuccess')).toEqual([]);
    const sale = await t.client.gql(SALE, { id: saleId });
    expect(sale.errors).toBeUndefined();
    const after = await level(item);
    expect(Math.min(after.available, after.reserved, after.sold)).toBeGreaterThanOrEqual(0);
    // The committed order was counted by the rebuild.
    expect(after.sold).toBe(await confirmedUnits(item));
    expect(after.available + after.reserved + after.sold).toBe(200);
  });

  it('a hold key lost on its own (its units still reserved) is recognised and the sale rebuilt: nothing stays reserved for ever', async () => {
    const { saleId, itemIds: [item] } = await createSale(t, { stock: 2, holdSeconds: 300 });
    const hold = (await t.client.gql(RESERVE, { input: { saleItemId: item, quantity: 1, idempotencyKey: 'lost-hold' } }, await t.token('c-lost-hold'))).data.reserve;
    expect(hold.__typename).toBe('ReserveSuccess');
    await t.app.redis.del(t.app.services.engine.keys.reservation(saleId, hold.reservation.id), `${t.app.services.engine.keys.base(saleId)}holds`);
    await eventually(async () => {
      const l = await level(item);
      return l.reserved === 0 && l.available === 2;
    }, 5000, 100);
  });

  it('npm run stock -- rebuild (recovery.repair) replaces a half-present sale', async () => {
    const { saleId, itemIds: [item] } = await createSale(t, { stock: 5 });
    expect(await buy(item, 'b2-buyer')).toMatchObject({ __typename: 'PurchaseSuccess' });
    const base = t.app.services.engine.keys.base(saleId);
    await t.app.redis.del(`${base}usage`);
    const sale = await t.app.services.sales.requireSale(saleId);
    expect(await t.app.services.recovery.repair(sale, 'operator')).toBe('rebuilt');
    expect(await level(item)).toMatchObject({ available: 4, reserved: 0, sold: 1 });
    // The limit survived the rebuild: usage came back from the orders.
    expect(await buy(item, 'b2-buyer')).toMatchObject({ __typename: 'PurchaseSuccess' });
    expect(await buy(item, 'b2-buyer')).toMatchObject({ __typename: 'Rejected', code: 'LIMIT_EXCEEDED' });
  });
});

describe('c. live state rolled back to an older copy', () => {
  it('DUMP, buy, RESTORE, buy again: PostgreSQL refuses the second unit and the sale is repaired', async () => {
    const { saleId, itemIds: [item] } = await createSale(t, { stock: 1 });
    const base = t.app.services.engine.keys.base(saleId);
    const keys = ['meta', 'stock', 'usage', 'idem', 'holds', 'confirming'].map((k) => `${base}${k}`);
    const dumps = await Promise.all(keys.map((k) => t.app.redis.dumpBuffer(k)));
    expect(await buy(item, 'c-first')).toMatchObject({ __typename: 'PurchaseSuccess' });
    for (const [i, k] of keys.entries()) {
      await t.app.redis.del(k);
      if (dumps[i]) await t.app.redis.restore(k, 0, dumps[i]!);
    }
    const second = await buy(item, 'c-second');
    expect(second.__typename).toBe('Rejected');
    expect(['SOLD_OUT', 'TEMPORARILY_UNAVAILABLE']).toContain(second.code);
    expect(await confirmedUnits(item)).toBe(1);
    await eventually(async () => (await level(item)).sold === 1, 5000, 100);
    expect(await level(item)).toMatchObject({ available: 0, reserved: 0, sold: 1 });
    expect(await buy(item, 'c-third')).toMatchObject({ __typename: 'Rejected', code: 'SOLD_OUT' });
    expect(await confirmedUnits(item)).toBe(1);
  });

  it('a rollback that loses only a hold: recognised by the ledger\'s versions, repaired, and the ledger sums to available again', async () => {
    const { saleId, itemIds: [item] } = await createSale(t, { stock: 3 });
    const base = t.app.services.engine.keys.base(saleId);
    const keys = ['meta', 'stock', 'usage', 'idem', 'holds', 'confirming'].map((k) => `${base}${k}`);
    const dumps = await Promise.all(keys.map((k) => t.app.redis.dumpBuffer(k)));
    const hold = (await t.client.gql(RESERVE, { input: { saleItemId: item, quantity: 1, idempotencyKey: 'c-hold' } }, await t.token('c-holder'))).data.reserve;
    expect(hold.__typename).toBe('ReserveSuccess');
    const ledger = async () => Number((await t.app.db.selectFrom('stock_events').select(sql<string>`coalesce(sum(delta), 0)`.as('n')).where('sale_item_id', '=', item).executeTakeFirstOrThrow()).n);
    await eventually(async () => (await ledger()) === 2, 5000, 50);
    for (const [i, k] of keys.entries()) {
      await t.app.redis.del(k);
      if (dumps[i]) await t.app.redis.restore(k, 0, dumps[i]!);
    }
    // Redis now says 3 available and nobody holds anything, as if the reservation never happened.
    await eventually(async () => {
      const [l, live] = [await ledger(), await level(item)];
      return l === live.available && live.available + live.reserved + live.sold === 3;
    }, 8000, 100);
  });

  it('a rollback whose copy then wrote on: the ledger refuses the second branch, the sale is rebuilt and the ledger sums to available', async () => {
    // No periodic check here: only the ledger's chain may notice, because the version caught up.
    const s = await startTestServer('integrity-fork', { RATE_LIMIT_ENABLED: 'false', RECOVERY_INTERVAL_MS: '60000', DRAIN_INTERVAL_MS: '50' });
    try {
      const { saleId, itemIds: [item] } = await createSale(s, { stock: 2 });
      const ledger = async () => Number((await s.app.db.selectFrom('stock_events').select(sql<string>`coalesce(sum(delta), 0)`.as('n')).where('sale_item_id', '=', item).executeTakeFirstOrThrow()).n);
      const epoch = async () => (await s.app.db.selectFrom('sales').select('live_epoch').where('id', '=', saleId).executeTakeFirstOrThrow()).live_epoch;
      const before = await epoch();
      const hold = (await s.client.gql(RESERVE, { input: { saleItemId: item, quantity: 1, idempotencyKey: 'f-1' } }, await s.token('f-holder'))).data.reserve;
      expect(hold.__typename).toBe('ReserveSuccess');
      const base = s.app.services.engine.keys.base(saleId);
      const keys = ['meta', 'stock', 'usage', 'idem', 'holds', 'confirming'].map((k) => `${base}${k}`).concat(s.app.services.engine.keys.reservation(saleId, hold.reservation.id));
      expect(await s.app.redis.exists(keys.at(-1)!)).toBe(1);
      const dumps = await Promise.all(keys.map((k) => s.app.redis.dumpBuffer(k)));
      // Branch one: the hold is released, and the ledger copies that.
      expect((await s.client.gql(RELEASE, { id: hold.reservation.id }, await s.token('f-holder'))).data.releaseReservation.__typename).toBe('ReleaseSuccess');
      await eventually(async () => (await ledger()) === 2, 5000, 20);
      // Branch two: the state goes back to the copy with the hold, and sells on from there.
      for (const [i, k] of keys.entries()) {
        await s.app.redis.del(k);
        if (dumps[i]) await s.app.redis.restore(k, 0, dumps[i]!);
      }
      const second = (await s.client.gql(RESERVE, { input: { saleItemId: item, quantity: 1, idempotencyKey: 'f-2' } }, await s.token('f-other'))).data.reserve;
      expect(second.__typename).toBe('ReserveSuccess');
      // The second branch's event follows the same one as the release: refused, and the sale rebuilt
      // from PostgreSQL (no orders: both units available, nothing held) with the ledger corrected.
      await eventually(async () => (await epoch()) > before, 5000, 50);
      await eventually(async () => {
        const live = (await s.client.gql(SALE_ITEM, { id: item })).data.saleItem;
        return live.available === 2 && live.reserved === 0 && (await ledger()) === 2;
      }, 5000, 50);
      const heads = await sql<{ prev: string; n: string }>`select prev_stream_id as prev, count(*) as n from stock_events where sale_id = ${saleId} and prev_stream_id is not null group by 1 having count(*) > 1`.execute(s.app.db);
      expect(heads.rows).toEqual([]);
    } finally {
      await s.close();
    }
  });

  it('a sale whose check fails never keeps the others from being checked and repaired', async () => {
    const s = await startTestServer('integrity-check-all', { RATE_LIMIT_ENABLED: 'false', RECOVERY_INTERVAL_MS: '60000' });
    try {
      const broken = await createSale(s, { stock: 1 });
      const lost = await createSale(s, { stock: 2 });
      const { engine, ledger, events } = s.app.services;
      const failing = Object.assign(Object.create(engine) as StockEngine, {
        liveCheck: async (saleId: string) => {
          if (saleId === broken.saleId) throw new Error('this sale cannot be checked');
          return engine.liveCheck(saleId);
        },
      });
      const recovery = new StockRecovery(s.app.db, s.app.redis, failing, ledger, events, new Registry(), pino({ level: 'silent' }), 3_600_000);
      await s.app.redis.del(engine.keys.meta(lost.saleId));
      expect(await engine.isLive(lost.saleId)).toBe(false);
      await recovery.checkAll();
      expect(await engine.isLive(lost.saleId)).toBe(true);
    } finally {
      await s.close();
    }
  });

  it('a repair blocked by a transaction that never ends gives up (the others go on), and succeeds once it is gone', async () => {
    const s = await startTestServer('integrity-fence-timeout', { RATE_LIMIT_ENABLED: 'false', RECOVERY_INTERVAL_MS: '60000' });
    const locker = new pg.Client({ connectionString: s.app.config.DATABASE_URL });
    try {
      const stuck = await createSale(s, { stock: 1 });
      const other = await createSale(s, { stock: 2 });
      const { engine } = s.app.services;
      // A session that vanished mid-transaction holding the sale row: the fence cannot get past it.
      await locker.connect();
      await locker.query('begin');
      await locker.query('select 1 from sales where id = $1 for share', [stuck.saleId]);
      for (const sale of [stuck, other]) await s.app.redis.del(engine.keys.meta(sale.saleId));
      const started = Date.now();
      await s.app.services.recovery.checkAll();
      expect(Date.now() - started).toBeLessThan(8000);
      expect(await engine.isLive(other.saleId)).toBe(true);
      expect(await engine.isLive(stuck.saleId)).toBe(false);
      await locker.query('rollback');
      await s.app.services.recovery.checkAll();
      expect(await engine.isLive(stuck.saleId)).toBe(true);
      // Sessions idle in a transaction are ended by the server rather than holding locks for ever.
      const setting = await sql<{ v: string }>`select current_setting('idle_in_transaction_session_timeout') as v`.execute(s.app.db);
      expect(setting.rows[0].v).toBe('10s');
    } finally {
      await locker.end().catch(() => undefined);
      await s.close();
    }
  }, 20_000);

  it('an adjustment onto a stale live state is refused (TEMPORARILY_UNAVAILABLE) and the figures add up to PostgreSQL\'s stock', async () => {
    const { saleId, itemIds: [item] } = await createSale(t, { stock: 2 });
    const stockKey = `${t.app.services.engine.keys.base(saleId)}stock`;
    const before = await t.app.redis.dumpBuffer(stockKey);
    expect((await t.client.gql(ADJUST, { item, delta: 1 }, t.admin)).errors).toBeUndefined();
    await t.app.redis.del(stockKey);
    await t.app.redis.restore(stockKey, 0, before!);
    const stale = await t.client.gql(ADJUST, { item, delta: 1 }, t.admin);
    expect(stale.errors?.[0]?.extensions).toMatchObject({ code: 'TEMPORARILY_UNAVAILABLE' });
    await eventually(async () => {
      const l = await level(item);
      return l.available + l.reserved + l.sold === 3;
    }, 5000, 50);
    expect((await t.client.gql(ADJUST, { item, delta: 1 }, t.admin)).errors).toBeUndefined();
    const after = await level(item);
    expect(after.available + after.reserved + after.sold).toBe(4);
  });

  it('an adjustment while a rebuild has read the stock but not yet replaced the live state is refused, never lost', async () => {
    const { saleId, itemIds: [item] } = await createSale(t, { stock: 3 });
    const { engine, ledger, events } = t.app.services;
    // A rebuild held between reading PostgreSQL's counts and replacing the live state with them.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let reached!: () => void;
    const atGate = new Promise<void>((r) => (reached = r));
    const held = Object.assign(Object.create(engine) as StockEngine, {
      rebuildSale: async (...args: Parameters<StockEngine['rebuildSale']>) => {
        reached();
        await gate;
        return engine.rebuildSale(...args);
      },
    });
    const recovery = new StockRecovery(t.app.db, t.app.redis, held, ledger, events, new Registry(), pino({ level: 'silent' }), 3_600_000);
    const sale = await t.app.db.selectFrom('sales').selectAll().where('id', '=', saleId).executeTakeFirstOrThrow();
    const rebuilding = recovery.repair(sale, 'test');
    await atGate;
    const adjusted = await t.client.gql(ADJUST, { item, delta: 3 }, t.admin);
    release();
    expect(await rebuilding).toBe('initialised');
    expect(adjusted.errors?.[0]?.extensions).toMatchObject({ code: 'TEMPORARILY_UNAVAILABLE' });
    const durable = await t.app.db.selectFrom('sale_items').select('stock').where('id', '=', item).executeTakeFirstOrThrow();
    const live = await level(item);
    expect(live.available + live.reserved + live.sold).toBe(durable.stock);
    expect(durable.stock).toBe(3);
  });

  it('a rollback to before a cancel: PostgreSQL refuses the purchase and the sale reads CANCELLED again', async () => {
    const { saleId, itemIds: [item] } = await createSale(t, { stock: 2 });
    const meta = `${t.app.services.engine.keys.base(saleId)}meta`;
    const before = await t.app.redis.dumpBuffer(meta);
    expect((await t.client.gql(CANCEL_SALE, { id: saleId }, t.admin)).data.cancelSale.status).toBe('CANCELLED');
    await t.app.redis.del(meta);
    await t.app.redis.restore(meta, 0, before!);
    expect(await buy(item, 'c-cancelled')).toMatchObject({ __typename: 'Rejected', code: 'SALE_CANCELLED' });
    await eventually(async () => (await t.client.gql(SALE, { id: saleId })).data.sale.status === 'CANCELLED', 5000, 100);
    expect(await buy(item, 'c-cancelled-2')).toMatchObject({ __typename: 'Rejected', code: 'SALE_CANCELLED' });
    expect(await confirmedUnits(item)).toBe(0);
  });

  it('a real replica promoted after missing writes: no unit sold twice, the state verified and repaired', async () => {
    const primary = await RedisServer.start();
    const replica = await RedisServer.start(primary.port);
    const proxy = await PgProxy.start({ host: '127.0.0.1', port: primary.port });
    const s = await startTestServer('integrity-replica', {
      RATE_LIMIT_ENABLED: 'false', RECOVERY_INTERVAL_MS: '200', REDIS_URL: `redis://127.0.0.1:${proxy.port}/0`,
    });
    try {
      const { saleId, itemIds: [item] } = await createSale(s, { stock: 2, perUserLimit: 1 });
      const buyOn = async (who: string) => (await s.client.gql(PURCHASE, { input: { saleItemId: item, quantity: 1, idempotencyKey: `r-${who}` } }, await s.token(who))).data?.purchase;
      expect(await buyOn('r-1')).toMatchObject({ __typename: 'PurchaseSuccess' });
      // The replica has everything so far, then stops hearing the primary (a partition).
      const base = s.app.services.engine.keys.base(saleId);
      await eventually(async () => (await replica.client.hget(`${base}stock`, `${item}:s`)) === '1', 5000, 50);
      await replica.client.replicaof('NO', 'ONE');
      expect(await buyOn('r-2')).toMatchObject({ __typename: 'PurchaseSuccess' });
      // Failover: the primary goes away and every connection now reaches the stale replica.
      proxy.switchTo({ host: '127.0.0.1', port: replica.port });
      await primary.stop();
      const answers: Record<string, unknown>[] = [];
      for (let i = 3; i < 8; i++) {
        let r = await buyOn(`r-${i}`).catch(() => undefined);
        for (let tries = 0; tries < 50 && (!r || r.code === 'TEMPORARILY_UNAVAILABLE'); tries++) {
          await new Promise((res) => setTimeout(res, 200));
          r = await buyOn(`r-${i}`).catch(() => undefined);
        }
        answers.push(r);
      }
      expect(answers.every((a) => a?.__typename === 'Rejected' && a.code === 'SOLD_OUT')).toBe(true);
      const units = await s.app.db.selectFrom('orders').select(sql<string>`sum(quantity)`.as('n')).where('sale_item_id', '=', item).where('status', '=', 'CONFIRMED').executeTakeFirstOrThrow();
      expect(Number(units.n)).toBe(2);
      await eventually(async () => (await s.client.gql(SALE_ITEM, { id: item })).data.saleItem.sold === 2, 5000, 100);
    } finally {
      await s.close().catch(() => undefined);
      await proxy.close();
      await replica.stop();
      await primary.stop();
    }
  });
});

describe('d. a cancelled sale takes no more orders', () => {
  it('cancelling releases holds without offering them to the waitlist, ends waiting entries, and PostgreSQL refuses a late order', async () => {
    const { saleId, itemIds: [item] } = await createSale(t, { stock: 1 });
    const hold = (await t.client.gql(RESERVE, { input: { saleItemId: item, quantity: 1, idempotencyKey: 'd-hold' } }, await t.token('d-holder'))).data.reserve;
    expect(hold.__typename).toBe('ReserveSuccess');
    const [first, second] = [await t.token('d-waiter-1'), await t.token('d-waiter-2')];
    expect((await t.client.gql(JOIN_WAITLIST, { item }, first)).data.joinWaitlist).toMatchObject({ status: 'WAITING' });
    expect((await t.client.gql(JOIN_WAITLIST, { item }, second)).data.joinWaitlist).toMatchObject({ status: 'WAITING' });
    // Added stock goes to the head of the waitlist: the first waiter holds an offer when the sale is cancelled.
    expect((await t.client.gql(ADJUST, { item, delta: 1 }, t.admin)).errors).toBeUndefined();
    const offer = (await t.client.gql(MY_WAITLIST, { sale: saleId }, first)).data.me.waitlist[0];
    expect(offer).toMatchObject({ status: 'OFFERED', offer: { status: 'HELD' } });

    expect((await t.client.gql(CANCEL_SALE, { id: saleId }, t.admin)).data.cancelSale.status).toBe('CANCELLED');
    // The offer made before the cancel cannot be confirmed now.
    expect((await t.client.gql(CONFIRM, { id: offer.offer.id }, first)).data.confirmReservation).toMatchObject({ __typename: 'Rejected', code: 'RESERVATION_NOT_HELD' });
    // The released hold was not offered to the second waiter after the cancel; both entries ended.
    expect((await t.client.gql(MY_WAITLIST, { sale: saleId }, second)).data.me.waitlist).toMatchObject([{ status: 'LAPSED', offer: null }]);
    expect((await t.client.gql(MY_WAITLIST, { sale: saleId }, first)).data.me.waitlist).toMatchObject([{ status: 'LAPSED', offer: { status: 'RELEASED' } }]);
    expect(await level(item)).toMatchObject({ available: 2, reserved: 0, sold: 0 });
    const { orders } = t.app.services;
    // A hold taken before the cancel whose order arrives after it: PostgreSQL refuses it.
    const late = await orders.insert({
      id: newId(), saleId, saleItemId: item, reservationId: newChildId(saleId), customerId: 'd-late', quantity: 1, unitPriceCents: 1,
      idempotencyKey: null, deliveryEnc: null, deadline: new Date(Date.now() + 5000), liveEpoch: 1, liveVersion: 1,
    });
    expect(late).toEqual({ ok: false, reason: 'REFUSED', refusal: 'SALE_CANCELLED' });
    const after = await t.app.db.selectFrom('orders').selectAll().where('sale_id', '=', saleId).execute();
    expect(after).toEqual([]);
  });
});

describe('e. cancelling an order while its hold is still confirming', () => {
  it('gives the unit back exactly once: the next buyer gets it, Redis and PostgreSQL agree', async () => {
    const { saleId, itemIds: [item] } = await createSale(t, { stock: 1 });
    const { orderId } = await committedNotConfirmed(saleId, item, 'e-buyer');
    const cancelled = (await t.client.gql(CANCEL_ORDER, { id: orderId }, await t.token('e-buyer'))).data.cancelOrder;
    expect(cancelled).toMatchObject({ __typename: 'CancelOrderSuccess' });
    expect(await level(item)).toMatchObject({ available: 1, reserved: 0, sold: 0 });
    // Past the confirmation window and the sweeper's grace, nothing takes the unit away again.
    await new Promise((r) => setTimeout(r, 2500));
    expect(await buy(item, 'e-next')).toMatchObject({ __typename: 'PurchaseSuccess' });
    expect(await level(item)).toMatchObject({ available: 0, reserved: 0, sold: 1 });
    expect(await confirmedUnits(item)).toBe(1);
  });
});

describe('f. the waitlist of a waiting-room sale', () => {
  it('takes only admitted customers (NOT_ADMITTED otherwise)', async () => {
    const { saleId, itemIds: [item] } = await createSale(t, { stock: 1, waitingRoom: true, admitPerSecond: 1000 });
    expect((await t.client.gql(JOIN_WAITLIST, { item }, await t.token('f-stranger'))).data.joinWaitlist).toMatchObject({ __typename: 'Rejected', code: 'NOT_ADMITTED' });
    const guest = await t.token('f-guest');
    await t.client.gql(JOIN_QUEUE, { saleId }, guest);
    await eventually(async () => (await t.client.gql(MY_TICKET, { saleId }, guest)).data.me.queueTicket?.status === 'ADMITTED', 5000, 50);
    // Admitted: the waitlist answers on the item's stock (available, so buy instead).
    expect((await t.client.gql(JOIN_WAITLIST, { item }, guest)).data.joinWaitlist).toMatchObject({ __typename: 'Rejected', code: 'WAITLIST_CLOSED' });
  });
});

describe('g. waitlist endings are shown and pushed', () => {
  it('pushes LAPSED at once when an offer ends unconfirmed, and FULFILLED when one is confirmed', async () => {
    const { saleId, itemIds: [item] } = await createSale(t, { stock: 1, holdSeconds: 1 });
    await t.client.gql(RESERVE, { input: { saleItemId: item, quantity: 1, idempotencyKey: 'g-hold' } }, await t.token('g-holder'));
    const [lapser, taker] = [await t.token('g-lapser'), await t.token('g-taker')];
    await t.client.gql(JOIN_WAITLIST, { item }, lapser);
    await t.client.gql(JOIN_WAITLIST, { item }, taker);
    const clients = [wsClient(t.app.url, lapser), wsClient(t.app.url, taker)];
    const [first, second] = clients.map((c) => new Recorder(c, WAITLIST_CHANGED, { sale: saleId }));
    try {
      await first.waitFor((d: any) => d.waitlistChanged.status === 'OFFERED', 8000);
      const lapsed = await first.waitFor((d: any) => d.waitlistChanged.status === 'LAPSED', 8000);
      expect((lapsed.data as any).waitlistChanged.offer).toMatchObject({ status: 'EXPIRED' });
      const offered = await second.waitFor((d: any) => d.waitlistChanged.status === 'OFFERED', 8000);
      const confirmed = (await t.client.gql(CONFIRM, { id: (offered.data as any).waitlistChanged.offer.id }, taker)).data.confirmReservation;
      expect(confirmed.__typename).toBe('PurchaseSuccess');
      await second.waitFor((d: any) => d.waitlistChanged.status === 'FULFILLED', 4000);
      expect((await t.client.gql(MY_WAITLIST, { sale: saleId }, lapser)).data.me.waitlist).toMatchObject([{ status: 'LAPSED' }]);
    } finally {
      for (const c of clients) await c.dispose();
    }
  });
});

describe('PostgreSQL unreachable during the other buying mutations', () => {
  it('confirmReservation and cancelOrder answer TEMPORARILY_UNAVAILABLE, change nothing, and work once it is back', async () => {
    const proxy = await PgProxy.start({ host: '127.0.0.1', port: 5432 });
    const iso = { url: new URL(process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres') };
    iso.url.pathname = `/fs_test_pgcut_${newId().toLowerCase().replace(/[^a-z0-9]/g, '')}`;
    const s = await startTestServer('integrity-pgcut', { RATE_LIMIT_ENABLED: 'false', DATABASE_URL: proxy.urlFor(iso.url.toString()) });
    try {
      // A fresh item, so its price is not cached yet: the confirm needs PostgreSQL.
      const { itemIds: [item] } = await createSale(s, { stock: 2 });
      const token = await s.token('pgcut-buyer');
      const bought = (await s.client.gql(PURCHASE, { input: { saleItemId: item, quantity: 1, idempotencyKey: 'pgcut-1' } }, token)).data.purchase;
      const { itemIds: [other] } = await createSale(s, { stock: 2 });
      const hold = (await s.client.gql(RESERVE, { input: { saleItemId: other, quantity: 1, idempotencyKey: 'pgcut-2' } }, token)).data.reserve;
      await proxy.cut();
      const confirm = await s.client.gql(CONFIRM, { id: hold.reservation.id }, token);
      expect(confirm.errors).toBeUndefined();
      expect(confirm.data.confirmReservation).toMatchObject({ __typename: 'Rejected', code: 'TEMPORARILY_UNAVAILABLE' });
      const cancel = await s.client.gql(CANCEL_ORDER, { id: bought.order.id }, token);
      expect(cancel.errors).toBeUndefined();
      expect(cancel.data.cancelOrder).toMatchObject({ __typename: 'Rejected', code: 'TEMPORARILY_UNAVAILABLE' });
      // Admin mutations and reads that need PostgreSQL: a typed retry too, never INTERNAL_SERVER_ERROR.
      const pause = await s.client.gql(`mutation($id: ID!) { pauseSale(id: $id) { id } }`, { id: hold.reservation.id.split('.')[0] }, s.admin);
      expect(pause.errors?.[0]?.extensions).toMatchObject({ code: 'TEMPORARILY_UNAVAILABLE' });
      const adjust = await s.client.gql(ADJUST, { item: other, delta: 1 }, s.admin);
      expect(adjust.errors?.[0]?.extensions).toMatchObject({ code: 'TEMPORARILY_UNAVAILABLE' });
      const me = await s.client.gql(`query { me { orders { edges { node { id } } } } }`, {}, token);
      expect(me.errors?.[0]?.extensions).toMatchObject({ code: 'TEMPORARILY_UNAVAILABLE' });
      await proxy.restore();
      await eventually(async () => (await s.client.gql(CONFIRM, { id: hold.reservation.id }, token)).data?.confirmReservation?.__typename === 'PurchaseSuccess', 10_000, 200);
      expect((await s.client.gql(CANCEL_ORDER, { id: bought.order.id }, token)).data.cancelOrder.__typename).toBe('CancelOrderSuccess');
    } finally {
      await proxy.restore();
      await s.close();
      await proxy.close();
    }
  });
});

/** A redis-server of the test's own, on its own port; a replica when given its primary's port. */
class RedisServer {
  private constructor(readonly port: number, private readonly child: ChildProcess, readonly client: Redis) {}

  static async start(replicaOf?: number): Promise<RedisServer> {
    const port = await freePort();
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
    if (replicaOf) args.push('--replicaof', '127.0.0.1', String(replicaOf));
    args.push("--dir", tmpdir(), "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0");
    const child = spawn("redis-server", args, { stdio: "ignore" });
    await redisAnswering(port, 5000);
    const client = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    return new RedisServer(port, child, client);
  }

  async stop(): Promise<void> {
    this.client.disconnect();
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await exited;
  }
}
