import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { startApp, type App } from '../src/app.js';
import { createLogger } from '../src/logger.js';
import { TokenService } from '../src/services/auth.js';
import { createSale } from './support/fixtures.js';
import { dropDatabase, eventually, GqlClient, isolation, PG_ADMIN_URL, startTestServer, testConfig, type TestServer } from './support/harness.js';
import { CANCEL_ORDER, PURCHASE, RESERVE, SALE_ITEM } from './support/operations.js';
import { freePort, RedisProcess } from './support/redis-process.js';

/**
 * The procedure of docs/backup-and-restore.md, run for real: `pg_dump -Fc` of a database in the
 * middle of a sale, `createdb` + `pg_restore` into a fresh database, the API started on it with an
 * empty Redis (a redis-server of the test's own). Every live sale must be rebuilt from PostgreSQL
 * and sell exactly its remaining stock.
 */

const run = promisify(execFile);
const ADJUST = /* GraphQL */ `mutation($item: ID!, $delta: Int!) { adjustStock(saleItemId: $item, delta: $delta, reason: "backup test") { id } }`;

/** libpq's connection options of the test's PostgreSQL, for the command-line tools. */
function pgArgs(): string[] {
  const u = new URL(PG_ADMIN_URL);
  return ['-h', u.hostname, '-p', u.port || '5432', '-U', decodeURIComponent(u.username || 'postgres')];
}
const dbName = (url: string) => decodeURIComponent(new URL(url).pathname.slice(1));

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

describe('backup mid-sale and restore into a fresh database with an empty Redis', () => {
  it('rebuilds every live sale from PostgreSQL and sells exactly the remaining stock; old idempotency keys replay', async () => {
    const t: TestServer = await startTestServer('backup-src', { RATE_LIMIT_ENABLED: 'false' });
    let tClosed = false;
    cleanups.push(async () => !tClosed && t.close());
    const tokens = new Map<string, string>();
    const tok = async (who: string) => tokens.get(who) ?? tokens.set(who, await t.token(who)).get(who)!;

    // Two live sales, three items: two of 150 (limit 2 each), one of 100.
    const s1 = await createSale(t, { stock: 150, items: 2, perUserLimit: 2, holdSeconds: 300 });
    const s2 = await createSale(t, { stock: 100, items: 1, perUserLimit: 2, holdSeconds: 300 });
    const [item0, item1] = s1.itemIds;
    const [item2] = s2.itemIds;
    const buy = async (c: GqlClient, who: string, item: string, quantity: number, key: string) =>
      (await c.gql(PURCHASE, { input: { saleItemId: item, quantity, idempotencyKey: key } }, await tok(who))).data?.purchase;

    // Selling before the backup: purchases, holds left outstanding, a cancelled order, stock adjustments.
    const pre0 = await Promise.all(Array.from({ length: 60 }, (_, i) => buy(t.client, `c${i}`, item0, 1, `pre0-${i}`)));
    const pre1 = await Promise.all(Array.from({ length: 30 }, (_, i) => buy(t.client, `c${60 + i}`, item1, 2, `pre1-${i}`)));
    const pre2 = await Promise.all(Array.from({ length: 20 }, (_, i) => buy(t.client, `c${i}`, item2, 1, `pre2-${i}`)));
    for (const p of [...pre0, ...pre1, ...pre2]) expect(p).toMatchObject({ __typename: 'PurchaseSuccess', replayed: false });
    const holds = await Promise.all(Array.from({ length: 10 }, async (_, i) =>
      (await t.client.gql(RESERVE, { input: { saleItemId: item0, quantity: 1, idempotencyKey: `hold-${i}` } }, await tok(`h${i}`))).data.reserve));
    for (const h of holds) expect(h.__typename).toBe('ReserveSuccess');
    const cancelled = (await t.client.gql(CANCEL_ORDER, { id: pre0[0].order.id }, await tok('c0'))).data.cancelOrder;
    expect(cancelled).toMatchObject({ __typename: 'CancelOrderSuccess', order: { status: 'CANCELLED' } });
    expect((await t.client.gql(ADJUST, { item: item1, delta: 10 }, t.admin)).errors).toBeUndefined();
    expect((await t.client.gql(ADJUST, { item: item2, delta: -5 }, t.admin)).errors).toBeUndefined();
    const stock = { [item0]: 150, [item1]: 160, [item2]: 95 };
    const soldBefore = { [item0]: 59, [item1]: 60, [item2]: 20 };
    expect((await t.client.gql(SALE_ITEM, { id: item0 })).data.saleItem).toMatchObject({ available: 81, reserved: 10, sold: 59 });
    // The holds are written to PostgreSQL after the answer; the backup should carry them.
    await eventually(async () => (await t.app.db.selectFrom('reservations').select('id').where('sale_item_id', '=', item0).where('status', '=', 'HELD').execute()).length === 10);

    // The backup, taken while the sale runs (pg_dump reads one consistent snapshot).
    const dir = await mkdtemp(join(tmpdir(), 'fs-backup-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const dump = join(dir, 'flashsale.dump');
    await run('pg_dump', [...pgArgs(), '-Fc', '-d', dbName(t.app.config.DATABASE_URL), '-f', dump]);

    // An order after the dump: the backup does not have it (the documented caveat).
    const late = await buy(t.client, 'late-1', item2, 1, 'after-dump');
    expect(late.__typename).toBe('PurchaseSuccess');

    // The old database and its Redis are gone (close drops the database and deletes the prefix).
    await t.close();
    tClosed = true;

    // Restore into a fresh database.
    const iso = isolation('backup-dst');
    cleanups.push(() => dropDatabase(iso.databaseUrl));
    await run('createdb', [...pgArgs(), dbName(iso.databaseUrl)]);
    await run('pg_restore', [...pgArgs(), '--exit-on-error', '--no-owner', '-d', dbName(iso.databaseUrl), dump]);

    // The API on the restored database with an empty Redis of its own.
    const redis = new RedisProcess(await freePort());
    await redis.start();
    cleanups.push(() => redis.kill());
    const config = testConfig(iso, { REDIS_URL: redis.url, RATE_LIMIT_ENABLED: 'false', RECOVERY_INTERVAL_MS: '200' });
    const app: App = await startApp(config, { log: createLogger(config.LOG_LEVEL) });
    cleanups.push(() => app.stop());
    const client = new GqlClient(app.url);
    cleanups.push(() => client.close());
    const signer = new TokenService(config.JWT_SECRET);
    tokens.clear();
    const restoredTok = async (who: string) => tokens.get(who) ?? tokens.set(who, (await signer.sign(who, 'customer')).token).get(who)!;
    const buyR = async (who: string, item: string, quantity: number, key: string) =>
      (await client.gql(PURCHASE, { input: { saleItemId: item, quantity, idempotencyKey: key } }, await restoredTok(who))).data?.purchase;

    // Every live sale is rebuilt from PostgreSQL: sold units and adjustments kept, holds of the old cache released.
    for (const item of [item0, item1, item2]) {
      await eventually(async () => {
        const l = (await client.gql(SALE_ITEM, { id: item })).data?.saleItem;
        return l && l.sold === soldBefore[item] && l.reserved === 0 && l.available === stock[item] - soldBefore[item];
      }, 15_000, 100);
    }
    const hold = await client.gql(`query($id: ID!) { reservation(id: $id) { status endReason } }`, { id: holds[0].reservation.id }, await restoredTok('h0'));
    expect(hold.data.reservation).toEqual({ status: 'RELEASED', endReason: 'STOCK_REBUILT' });
    expect(await app.db.selectFrom('orders').select('id').where('id', '=', late.order.id).executeTakeFirst()).toBeUndefined();

    // Everything left, bought at once by many customers; retried only when told to.
    const decided = async (who: string, item: string, quantity: number, key: string) => {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const p = await buyR(who, item, quantity, key);
        if (p?.code !== 'TEMPORARILY_UNAVAILABLE' || Date.now() > deadline) return { who, item, quantity, p };
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const storm = await Promise.all([
      ...Array.from({ length: 200 }, (_, i) => decided(`n${i}`, item0, 1, `after0-${i}`)),
      ...Array.from({ length: 100 }, (_, i) => decided(`n${i}`, item1, 2, `after1-${i}`)),
      ...Array.from({ length: 120 }, (_, i) => decided(`n${i}`, item2, 1, `after2-${i}`)),
      // Customers who already bought one before the backup: two more would break the limit.
      ...Array.from({ length: 59 }, (_, i) => decided(`c${i + 1}`, item0, 2, `over-${i}`)),
      // The customer whose order was cancelled may buy two again.
      decided('c0', item1, 2, 'c0-again'),
    ]);
    const outcomes = storm.map((s) => (s.p?.__typename === 'PurchaseSuccess' ? 'OK' : s.p?.code ?? 'NONE'));
    expect(outcomes.filter((o) => !['OK', 'SOLD_OUT', 'LIMIT_EXCEEDED'].includes(o))).toEqual([]);
    expect(storm.filter((s) => s.p?.__typename === 'PurchaseSuccess' && s.who.startsWith('c') && s.who !== 'c0')).toEqual([]);

    // PostgreSQL: exactly the stock sold, nobody above the limit.
    const db = app.db;
    for (const item of [item0, item1, item2]) {
      const u = await db.selectFrom('orders').select(sql<string>`coalesce(sum(quantity), 0)`.as('u')).where('sale_item_id', '=', item).where('status', '=', 'CONFIRMED').executeTakeFirstOrThrow();
      expect(Number(u.u), `CONFIRMED units of ${item}`).toBe(stock[item]);
      expect((await client.gql(SALE_ITEM, { id: item })).data.saleItem).toMatchObject({ available: 0, reserved: 0, sold: stock[item] });
    }
    const perCustomer = await db.selectFrom('orders').select(['customer_id', 'sale_item_id', sql<string>`sum(quantity)`.as('u')])
      .where('sale_id', 'in', [s1.saleId, s2.saleId]).where('status', '=', 'CONFIRMED').groupBy(['customer_id', 'sale_item_id']).execute();
    expect(perCustomer.filter((r) => Number(r.u) > 2)).toEqual([]);

    // Idempotency keys of orders bought before the backup still replay, the cancelled one too.
    const replays = await Promise.all(Array.from({ length: 20 }, (_, i) => buyR(`c${i + 1}`, item0, 1, `pre0-${i + 1}`)));
    replays.forEach((p, i) => expect(p).toMatchObject({ __typename: 'PurchaseSuccess', replayed: true, order: { id: pre0[i + 1].order.id } }));
    expect(await buyR('c60', item1, 2, 'pre1-0')).toMatchObject({ replayed: true, order: { id: pre1[0].order.id, quantity: 2 } });
    expect(await buyR('c0', item0, 1, 'pre0-0')).toMatchObject({ replayed: true, order: { id: pre0[0].order.id, status: 'CANCELLED' } });

    // The ledger agrees with the live stock, and reconciliation finds no drift.
    for (const item of [item0, item1, item2]) await eventually(async () => (await app.services.ledger.sumOf(item)) === 0, 5000);
    const drift = await app.services.recovery.reconcile();
    expect(drift.filter((d) => d.drift !== 0)).toEqual([]);
  });
});
