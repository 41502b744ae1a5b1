/**
 * DATABASE_READ_URL against a real streaming replica: the test starts a PostgreSQL primary of its
 * own, a `pg_basebackup -R` standby of it, and two API instances reading from the standby. WAL
 * replay paused on the standby (`pg_wal_replay_pause()`) shows where each read goes: what the
 * primary has and the standby has not replayed is visible only to reads served by the primary.
 */
import { spawnSync } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type App } from '../src/app.js';
import { createLogger } from '../src/logger.js';
import { TokenService } from '../src/services/auth.js';
import { deleteRedisPrefix, eventually, GqlClient, isolation, testConfig } from './support/harness.js';
import { freePort } from './support/processes.js';
import { CREATE_PRODUCT, PURCHASE, SCHEDULE_SALE } from './support/operations.js';

const PG_BIN = (() => {
  const versions = readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a));
  return join('/usr/lib/postgresql', versions[0], 'bin');
})();

/** Runs a PostgreSQL tool as the `postgres` OS user (the server refuses to run as root). */
function asPostgres(tool: string, args: string[]): string {
  const r = spawnSync('runuser', ['-u', 'postgres', '--', join(PG_BIN, tool), ...args], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

const PRODUCT = `query($id: ID!) { product(id: $id) { id sku } }`;
const SALES = `query { sales(first: 100) { edges { node { id } } } }`;
const MY_ORDERS = `query { me { orders(first: 50) { edges { node { id } } } } }`;
const SALE_ORDERS = `query($saleId: ID!) { orders(saleId: $saleId, first: 50) { edges { node { id } } } }`;
const delivery = { name: 'Rita R', phone: '+919812345678', addressLine1: '1 Main Road', city: 'Pune', postalCode: '411001', country: 'IN' };

// Long enough that the checks made while replay is paused finish within it on a busy machine.
const MAX_LAG_MS = 4000;

describe('read replica (DATABASE_READ_URL) on a real streaming standby', () => {
  let dir = '';
  let primaryDir = '';
  let replicaDir = '';
  let sock = '';
  let primaryPort = 0;
  let replicaPort = 0;
  let a: App;
  let b: App;
  let onA: GqlClient;
  let onB: GqlClient;
  let replicaAdmin: pg.Client | null = null;
  const tokens = new TokenService(testConfig({ databaseUrl: 'postgres://x@127.0.0.1/x', redisPrefix: 'x' }).JWT_SECRET);
  const iso = isolation('readreplica');

  const startCluster = (dataDir: string, port: number) =>
    asPostgres('pg_ctl', ['-D', dataDir, '-l', join(dataDir, 'server.log'), '-w', '-t', '20', '-o',
      `-p ${port} -k ${sock} -c listen_addresses=127.0.0.1 -c wal_level=replica -c max_wal_senders=5 -c hot_standby=on -c fsync=off -c synchronous_commit=off -c max_connections=60`, 'start']);
  const stopCluster = (dataDir: string) => asPostgres('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', 'stop']);

  async function onReplica(statement: string): Promise<void> {
    if (!replicaAdmin) {
      replicaAdmin = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${replicaPort}/postgres` });
      replicaAdmin.on('error', () => undefined);
      await replicaAdmin.connect();
    }
    await replicaAdmin.query(statement);
  }

  async function ready(app: App): Promise<{ status: number; body: any }> {
    const res = await fetch(`${app.url}/ready`);
    return { status: res.status, body: await res.json() };
  }

  async function gauge(app: App): Promise<number> {
    const text = await (await fetch(`${app.url}/metrics`)).text();
    const m = /^flashsale_db_read_replica_state (\S+)$/m.exec(text);
    if (!m) throw new Error('no flashsale_db_read_replica_state on /metrics');
    return Number(m[1]);
  }

  const replicaState = async (app: App) => (await ready(app)).body.readReplica?.state;

  const token = async (subject: string, role: 'customer' | 'admin' = 'customer') => (await tokens.sign(subject, role)).token;

  let skuSeq = 0;
  async function createProduct(admin: string): Promise<string> {
    const p = await onA.gql(CREATE_PRODUCT, { input: { sku: `RR-${process.pid}-${Date.now()}-${skuSeq++}`, name: `Replica phone ${skuSeq}`, priceCents: 50_000, currency: 'USD' } }, admin);
    if (!p.data?.createProduct) throw new Error(`createProduct failed: ${p.body}`);
    return p.data.createProduct.id;
  }

  async function scheduleSale(admin: string, productId: string, stock = 10): Promise<{ saleId: string; itemId: string }> {
    const now = Date.now();
    const s = await onA.gql(SCHEDULE_SALE, { input: {
      name: 'Replica sale', startsAt: new Date(now - 1000).toISOString(), endsAt: new Date(now + 3_600_000).toISOString(),
      perUserLimit: 5, holdSeconds: 120, waitingRoom: false, items: [{ productId, priceCents: 19_999, stock }],
    } }, admin);
    if (!s.data?.scheduleSale) throw new Error(`scheduleSale failed: ${s.body}`);
    return { saleId: s.data.scheduleSale.id, itemId: s.data.scheduleSale.items[0].id };
  }

  /** Pauses replay, has admin-1 create a product, and tells whether an anonymous reader sees it at once (false: the read came from the replica). */
  async function pausedWriteIsVisible(client: GqlClient): Promise<boolean> {
    await onReplica('select pg_wal_replay_pause()');
    const admin = await token('admin-writer', 'admin');
    const id = await createProduct(admin);
    const seen = (await client.gql(PRODUCT, { id })).data.product !== null;
    await onReplica('select pg_wal_replay_resume()');
    return seen;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fs-replica-'));
    primaryDir = join(dir, 'primary');
    replicaDir = join(dir, 'replica');
    sock = join(dir, 'sock');
    mkdirSync(sock);
    for (const d of [dir, sock]) chownSync(d, Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout), Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout));
    primaryPort = await freePort();
    replicaPort = await freePort();
    asPostgres('initdb', ['-D', primaryDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
    startCluster(primaryDir, primaryPort);
    asPostgres('pg_basebackup', ['-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', '-D', replicaDir, '-R', '-X', 'stream', '--no-sync']);
    startCluster(replicaDir, replicaPort);

    const db = new URL(iso.databaseUrl).pathname;
    const config = testConfig({ databaseUrl: `postgres://postgres@127.0.0.1:${primaryPort}${db}`, redisPrefix: iso.redisPrefix }, {
      DATABASE_READ_URL: `postgres://postgres@127.0.0.1:${replicaPort}${db}`,
      DATABASE_READ_MAX_LAG_MS: String(MAX_LAG_MS),
      DATABASE_POOL_SIZE: '8',
    });
    a = await startApp(config, { log: createLogger(config.LOG_LEVEL) });
    b = await startApp(config, { log: createLogger(config.LOG_LEVEL) });
    onA = new GqlClient(a.url, 8);
    onB = new GqlClient(b.url, 8);
    // The database and its migrations reach the standby by replication.
    await eventually(async () => (await replicaState(a)) === 'ok' && (await replicaState(b)) === 'ok', 15_000, 100);
  }, 60_000);

  afterAll(async () => {
    await replicaAdmin?.end().catch(() => undefined);
    await onA?.close();
    await onB?.close();
    await b?.stop();
    await a?.stop();
    await deleteRedisPrefix(iso.redisPrefix);
    for (const d of [replicaDir, primaryDir]) {
      try {
        stopCluster(d);
      } catch {
        // already stopped (or never started)
      }
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('reads come from the replica; a buyer sees their own order at once on any instance; lag and an outage fall back to the primary', async () => {
    const t0 = Date.now();
    const admin = await token('admin-1', 'admin');
    const reporter = await token('admin-reporter', 'admin');
    const buyer = await token('rita');
    const { saleId, itemId } = await scheduleSale(admin, await createProduct(admin));
    expect(await ready(a)).toEqual({ status: 200, body: { status: 'ready', readReplica: { state: 'ok', lagMs: expect.any(Number), paused: false } } });
    expect(await gauge(a)).toBe(1);

    // The replica has replayed the sale (it may trail the primary by a moment) before it is paused.
    await eventually(async () => (await onA.gql(SALES)).data.sales.edges.some((e: { node: { id: string } }) => e.node.id === saleId), 10_000, 50);
    // --- replay paused: the replica stops where it is, the primary goes on.
    await onReplica('select pg_wal_replay_pause()');
    const paused = Date.now();
    const hidden = await createProduct(admin);
    const hiddenSale = await scheduleSale(admin, hidden);
    // Anonymous catalogue and sale-list reads come from the replica: the new product and sale are not there yet.
    expect((await onA.gql(PRODUCT, { id: hidden })).data.product).toBeNull();
    expect((await onB.gql(PRODUCT, { id: hidden })).data.product).toBeNull();
    const listed = (await onA.gql(SALES)).data.sales.edges.map((e: { node: { id: string } }) => e.node.id);
    expect(listed).toContain(saleId);
    expect(listed).not.toContain(hiddenSale.saleId);
    // The admin who wrote reads from the primary (read-your-writes), on either instance.
    expect((await onA.gql(PRODUCT, { id: hidden }, admin)).data.product?.id).toBe(hidden);
    expect((await onB.gql(PRODUCT, { id: hidden }, admin)).data.product?.id).toBe(hidden);

    // A purchase commits on the primary; its buyer sees the order at once, on this instance and the other.
    const bought = await onA.gql(PURCHASE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: 'rr-1', delivery } }, buyer);
    expect(bought.data.purchase.__typename, bought.body).toBe('PurchaseSuccess');
    const orderId = bought.data.purchase.order.id;
    const mine = async (client: GqlClient) => (await client.gql(MY_ORDERS, {}, buyer)).data.me.orders.edges.map((e: { node: { id: string } }) => e.node.id);
    expect(await mine(onA)).toEqual([orderId]);
    expect(await mine(onB)).toEqual([orderId]);
    // An admin who wrote nothing reads the fulfilment report from the replica: not there yet.
    const report = async (client: GqlClient) => (await client.gql(SALE_ORDERS, { saleId }, reporter)).data.orders.edges.map((e: { node: { id: string } }) => e.node.id);
    expect(await report(onA)).toEqual([]);
    // All of the above ran while the lag was within its bound (else they prove nothing about the replica).
    expect(Date.now() - paused).toBeLessThan(MAX_LAG_MS);

    // --- still paused, past the bound: the replica counts as lagging, reads go to the primary; /ready stays 200 and says so.
    await eventually(async () => (await replicaState(a)) === 'lagging', 10_000, 100);
    const lagging = await ready(a);
    expect(lagging.status).toBe(200);
    expect(lagging.body).toMatchObject({ status: 'degraded', degraded: ['read-replica'], readReplica: { state: 'lagging', paused: true } });
    expect(lagging.body.readReplica.lagMs).toBeGreaterThan(MAX_LAG_MS);
    expect(await gauge(a)).toBe(2);
    expect((await onA.gql(PRODUCT, { id: hidden })).data.product?.id).toBe(hidden);
    expect(await report(onA)).toEqual([orderId]);

    // --- replay resumed: the replica catches up and is used again (a paused write is invisible once more).
    await onReplica('select pg_wal_replay_resume()');
    await eventually(async () => (await replicaState(a)) === 'ok', 10_000, 100);
    expect(await gauge(a)).toBe(1);
    expect(await pausedWriteIsVisible(onA)).toBe(false);

    // --- the replica is stopped: reads still work from the primary, /ready 200 and degraded, the gauge says down.
    await replicaAdmin?.end().catch(() => undefined);
    replicaAdmin = null;
    stopCluster(replicaDir);
    await eventually(async () => (await replicaState(a)) === 'down', 10_000, 50);
    const down = await ready(a);
    expect(down.status).toBe(200);
    expect(down.body).toMatchObject({ status: 'degraded', degraded: ['read-replica'], readReplica: { state: 'down' } });
    expect(await gauge(a)).toBe(3);
    const during = await createProduct(admin);
    for (let i = 0; i < 5; i++) {
      const r = await onA.gql(PRODUCT, { id: during });
      expect(r.errors, r.body).toBeUndefined();
      expect(r.data.product?.id).toBe(during);
    }
    expect(await report(onA)).toEqual([orderId]);
    expect(await mine(onA)).toEqual([orderId]);

    // --- the replica is back: reads go to it again.
    startCluster(replicaDir, replicaPort);
    await eventually(async () => (await replicaState(a)) === 'ok' && (await replicaState(b)) === 'ok', 20_000, 100);
    expect(await gauge(a)).toBe(1);
    expect(await pausedWriteIsVisible(onA)).toBe(false);
    expect(await pausedWriteIsVisible(onB)).toBe(false);
    console.log(`read-replica scenario took ${Date.now() - t0} ms`);
  }, 60_000);
});
