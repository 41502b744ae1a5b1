import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.js';
import { createSale } from './support/fixtures.js';
import { eventually, startTestServer, type TestServer } from './support/harness.js';
import { Recorder, silentHoldAfterSnapshot, STOCK_CHANGED, wsClient, type StockUpdate } from './support/live.js';
import { PURCHASE, SALE_ITEM } from './support/operations.js';
import { freePort, redisAnswering } from './support/redis-process.js';

/**
 * Redis Sentinel (REDIS_SENTINELS + REDIS_SENTINEL_NAME), for real: a primary, a replica and three
 * sentinels started by the test; the primary is killed (SIGKILL) in the middle of a purchase storm.
 */

const MASTER = 'fsmaster';

class Proc {
  private constructor(readonly port: number, readonly child: ChildProcess) {}

  static async start(port: number, args: string[]): Promise<Proc> {
    const child = spawn('redis-server', args, { stdio: 'ignore' });
    await redisAnswering(port);
    return new Proc(port, child);
  }

  client(): Redis {
    const c = new Redis({ port: this.port, host: '127.0.0.1', maxRetriesPerRequest: 1, retryStrategy: () => null });
    c.on('error', () => undefined);
    return c;
  }

  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await exited;
  }
}

const procs: Proc[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await Promise.all(procs.map((p) => p.kill()));
});

async function startTopology() {
  const dir = await mkdtemp(join(tmpdir(), 'fs-sentinel-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const data = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0'];
  const pPort = await freePort();
  const primary = await Proc.start(pPort, ['--port', String(pPort), ...data]);
  procs.push(primary);
  const rPort = await freePort();
  const replica = await Proc.start(rPort, ['--port', String(rPort), ...data, '--replicaof', '127.0.0.1', String(pPort)]);
  procs.push(replica);
  const sentinels: Proc[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const conf = join(dir, `sentinel-${i}.conf`);
    // Sentinel rewrites its file (it must be writable); each one its own.
    await writeFile(conf, [
      `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`,
      `sentinel monitor ${MASTER} 127.0.0.1 ${pPort} 2`,
      `sentinel down-after-milliseconds ${MASTER} 1000`,
      `sentinel failover-timeout ${MASTER} 4000`,
      `sentinel parallel-syncs ${MASTER} 1`, '',
    ].join('\n'));
    const s = await Proc.start(port, [conf, '--sentinel']);
    procs.push(s);
    sentinels.push(s);
  }
  // Ready when the replica is in sync and every sentinel knows the replica and the two others.
  const r = replica.client();
  cleanups.push(async () => r.disconnect());
  await eventually(async () => /master_link_status:up/.test(await r.info('replication')), 10_000, 50);
  for (const s of sentinels) {
    const c = s.client();
    try {
      await eventually(async () => {
        const replicas = (await c.call('SENTINEL', 'REPLICAS', MASTER)) as unknown[];
        const others = (await c.call('SENTINEL', 'SENTINELS', MASTER)) as unknown[];
        return replicas.length === 1 && others.length === 2;
      }, 20_000, 100);
    } finally {
      c.disconnect();
    }
  }
  return { primary, replica, sentinels };
}

/** The connection names a redis-server has clients for. */
async function connectionNames(c: Redis): Promise<string[]> {
  const list = (await c.call('CLIENT', 'LIST')) as string;
  return list.split('\n').map((l) => / name=(\S*)/.exec(l)?.[1] ?? '').filter(Boolean);
}

describe('configuration', () => {
  const base = { NODE_ENV: 'test' };
  it('takes REDIS_SENTINELS and REDIS_SENTINEL_NAME together, and refuses one without the other, bad addresses, or a cluster too', () => {
    expect(parseConfig({ ...base, REDIS_SENTINELS: 'a:26379, b:26380', REDIS_SENTINEL_NAME: 'mymaster' })).toMatchObject({ REDIS_SENTINELS: 'a:26379, b:26380', REDIS_SENTINEL_NAME: 'mymaster' });
    expect(parseConfig({ ...base, REDIS_SENTINELS: '', REDIS_SENTINEL_NAME: '' }).REDIS_SENTINELS).toBeUndefined();
    expect(() => parseConfig({ ...base, REDIS_SENTINELS: 'a:26379' })).toThrow(/REDIS_SENTINEL_NAME: REDIS_SENTINELS and REDIS_SENTINEL_NAME go together/);
    expect(() => parseConfig({ ...base, REDIS_SENTINEL_NAME: 'mymaster' })).toThrow(/REDIS_SENTINELS: REDIS_SENTINELS and REDIS_SENTINEL_NAME go together/);
    expect(() => parseConfig({ ...base, REDIS_SENTINELS: 'a:26379,b', REDIS_SENTINEL_NAME: 'm' })).toThrow(/REDIS_SENTINELS: must be a comma-separated list of host:port \(not "b"\)/);
    expect(() => parseConfig({ ...base, REDIS_SENTINELS: 'a:99999', REDIS_SENTINEL_NAME: 'm' })).toThrow(/host:port/);
    expect(() => parseConfig({ ...base, REDIS_SENTINELS: 'a:1', REDIS_SENTINEL_NAME: 'm', REDIS_CLUSTER_NODES: 'c:7000' })).toThrow(/not both/);
  });
});

describe('Redis Sentinel failover in the middle of a purchase storm', () => {
  it('follows the promotion: purchases resume within 15 s, no oversell, live state verified against PostgreSQL, subscribers get a fresh snapshot', async () => {
    const { primary, replica, sentinels } = await startTopology();
    const t: TestServer = await startTestServer('sentinel', {
      REDIS_SENTINELS: sentinels.map((s) => `127.0.0.1:${s.port}`).join(','),
      REDIS_SENTINEL_NAME: MASTER,
      RATE_LIMIT_ENABLED: 'false',
      RECOVERY_INTERVAL_MS: '200',
      CONFIRM_WINDOW_MS: '1500',
    }, { captureLogs: 'info' });
    cleanups.push(() => t.close());
    const ws = wsClient(t.app.url);
    cleanups.push(async () => ws.dispose());

    // Every connection is on the primary the sentinels name: commands, publisher, subscriber.
    const p = primary.client();
    cleanups.push(async () => p.disconnect());
    const hubName = t.app.services.live.hub.connectionName;
    const STOCK = 600;
    const LIMIT = 2;
    const { saleId, itemIds: [item] } = await createSale(t, { stock: STOCK, perUserLimit: LIMIT, holdSeconds: 300 });
    const quiet = await createSale(t, { stock: 10, perUserLimit: 5 });
    const sub = new Recorder<{ stockChanged: StockUpdate }>(ws, STOCK_CHANGED, { saleId });
    const quietSub = new Recorder<{ stockChanged: StockUpdate }>(ws, STOCK_CHANGED, { saleId: quiet.saleId });
    await sub.waitFor(() => true);
    // A quiet sale whose subscriber saw only the first snapshot, then a hold no event announced
    // (made straight in the engine) and known to have reached the replica: after the switch only a
    // resync of the pub/sub connection can tell this subscriber about it.
    const quietVersion = await silentHoldAfterSnapshot(quietSub, t.app.services.engine, quiet.saleId, quiet.itemIds[0], 'quiet-holder');
    expect(await p.call('WAIT', '1', '5000')).toBe(1);
    await eventually(async () => {
      const now = await connectionNames(p);
      return ['flashsale', 'flashsale-pub', hubName].every((n) => now.includes(n));
    }, 10_000, 100);

    // The storm: 400 customers want two units each (800 for 600), retrying what the server says to retry.
    const tokens = await Promise.all(Array.from({ length: 400 }, (_, i) => t.token(`s${i}`)));
    let killAt = 0;
    let confirmedSeen = 0;
    let killed: Promise<void> | null = null;
    const successesAfterKill: number[] = [];
    const outcomes: string[] = [];
    const stormEnd = Date.now() + 45_000;
    const customer = async (tok: string, i: number) => {
      for (let unit = 0; unit < LIMIT; unit++) {
        for (;;) {
          const sentAt = Date.now();
          const r = await t.client.gql(PURCHASE, { input: { saleItemId: item, quantity: 1, idempotencyKey: `s${i}-${unit}` } }, tok).catch(() => null);
          const answer = r?.data?.purchase;
          if (answer?.__typename === 'PurchaseSuccess') {
            if (killAt && sentAt > killAt) successesAfterKill.push(Date.now());
            if (++confirmedSeen === 150 && !killAt) {
              // Mid-storm: the primary dies (no shutdown, no save), with requests in flight.
              killAt = Date.now();
              killed = primary.kill();
            }
            outcomes.push('OK');
            break;
          }
          if (answer && answer.code !== 'TEMPORARILY_UNAVAILABLE') {
            outcomes.push(answer.code);
            return;
          }
          if (Date.now() > stormEnd) {
            outcomes.push(`UNDECIDED ${r?.body ?? 'no answer'}`);
            return;
          }
          await new Promise((res) => setTimeout(res, 100 + Math.random() * 100));
        }
        // A person, not a script: a short pause before the second unit.
        await new Promise((res) => setTimeout(res, 20 + Math.random() * 80));
      }
    };
    await Promise.all(tokens.map(customer));
    await killed;
    expect(killAt).toBeGreaterThan(0);

    // The sentinels promoted the replica.
    const s0 = sentinels[0].client();
    cleanups.push(async () => s0.disconnect());
    expect(await s0.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER)).toEqual(['127.0.0.1', String(replica.port)]);

    // Purchases succeeded again within 15 s of the kill.
    expect(successesAfterKill.length).toBeGreaterThan(0);
    const resumedAfterMs = Math.min(...successesAfterKill) - killAt;
    console.log(`sentinel failover: first purchase sent after the kill succeeded ${resumedAfterMs} ms after it; outcomes ${JSON.stringify(count(outcomes))}`);
    expect(resumedAfterMs).toBeLessThan(15_000);
    expect(outcomes.filter((o) => !['OK', 'SOLD_OUT', 'LIMIT_EXCEEDED'].includes(o))).toEqual([]);

    // No oversell in PostgreSQL, nobody above the limit.
    const db = t.app.db;
    const confirmedUnits = async () => Number((await db.selectFrom('orders').select(sql<string>`coalesce(sum(quantity), 0)`.as('u'))
      .where('sale_item_id', '=', item).where('status', '=', 'CONFIRMED').executeTakeFirstOrThrow()).u);
    expect(await confirmedUnits()).toBeLessThanOrEqual(STOCK);
    const perCustomer = await db.selectFrom('orders').select(['customer_id', sql<string>`sum(quantity)`.as('u')])
      .where('sale_item_id', '=', item).where('status', '=', 'CONFIRMED').groupBy('customer_id').execute();
    expect(perCustomer.filter((r) => Number(r.u) > LIMIT)).toEqual([]);

    // The live state (now on the promoted replica) agrees with PostgreSQL: verified, or repaired.
    const level = await eventually(async () => {
      const l = (await t.client.gql(SALE_ITEM, { id: item })).data?.saleItem;
      if (!l || l.available + l.reserved + l.sold !== STOCK) return null;
      return l.reserved === 0 && l.sold === (await confirmedUnits()) ? l : null;
    }, 15_000, 200);
    const r = replica.client();
    cleanups.push(async () => r.disconnect());
    expect(/role:master/.test(await r.info('replication'))).toBe(true);
    expect(await r.hget(`${t.app.services.engine.keys.base(saleId)}stock`, `${item}:s`)).toBe(String(level.sold));
    const drift = await t.app.services.recovery.reconcile();
    expect(drift.filter((d) => d.saleId === saleId)).toEqual([{ saleId, saleItemId: item, drift: 0 }]);

    // Every connection followed the sentinels to the new primary.
    await eventually(async () => {
      const now = await connectionNames(r);
      return ['flashsale', 'flashsale-pub', hubName].every((n) => now.includes(n));
    }, 10_000, 100);

    // Subscribers: the pub/sub connection came back and resynced after the kill...
    const resync = await eventually(async () => t.logs.find((l) => l.msg === 'pub/sub connection restored; resyncing subscribers' && l.time > killAt), 10_000, 100);
    expect(resync).toBeDefined();
    // ...so the quiet sale's subscriber got a fresh snapshot, with the hold no event announced.
    const fresh = await quietSub.waitFor((d) => d.stockChanged.items[0].reserved === 3, 10_000);
    expect(fresh.at).toBeGreaterThan(killAt);
    expect(fresh.data!.stockChanged.version).toBeGreaterThan(quietVersion);
    // ...and the storm's subscriber ends on the state PostgreSQL confirms.
    await sub.waitFor((d) => d.stockChanged.items[0].sold === level.sold && d.stockChanged.items[0].available === level.available && d.stockChanged.items[0].reserved === 0, 10_000);
    expect(sub.error).toBeNull();
    quietSub.stop();
    sub.stop();
  });
});

function count(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}
