import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { createDb, ensureDatabase, type Db } from '../../../src/db/database.js';
import { dropDatabase } from '../../../src/dev/scratch.js';
import { TokenService } from '../../../src/services/auth.js';
import { API_COMMAND } from '../../../load/harness/server-process.js';
import { GqlClient, isolation, PG_ADMIN_URL } from '../harness.js';
import { freePort } from '../processes.js';
import { ChaosProxy } from './proxy.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const JWT_SECRET = 'chaos-test-secret-of-at-least-32-bytes';
/** Short windows, so interrupted commits and lost sales are resolved within a run. */
export const CONFIRM_WINDOW_MS = 1500;
export const HOLD_SECONDS = 2;
/** The sweeper leaves a CONFIRMING hold alone this long past its deadline (HoldSweeper). */
export const CONFIRM_GRACE_MS = 5000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A redis-server of the test's own (no persistence), so it can be a primary or a replica and be failed over. */
class RedisNode {
  private child: ChildProcess | null = null;
  readonly client: Redis;

  private readonly dir = mkdtempSync(join(tmpdir(), 'chaos-redis-'));

  constructor(readonly port: number) {
    this.client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 3 });
    this.client.on('error', () => undefined);
  }

  async start(): Promise<void> {
    this.child = spawn('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir,
      // Full syncs at once (a replica re-attached after a failover starts from the new primary's data).
      '--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0', '--repl-diskless-load', 'swapdb',
    ], { stdio: 'ignore' });
    for (let i = 0; i < 200; i++) {
      try {
        if (this.client.status === 'wait' || this.client.status === 'end') await this.client.connect();
        await this.client.ping();
        return;
      } catch {
        await sleep(25);
      }
    }
    throw new Error(`redis-server on ${this.port} did not start`);
  }

  async info(section: string): Promise<Record<string, string>> {
    const text = await this.client.info(section);
    const out: Record<string, string> = {};
    for (const line of text.split('\r\n')) {
      const i = line.indexOf(':');
      if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
    }
    return out;
  }

  async stop(): Promise<void> {
    this.client.disconnect();
    const child = this.child;
    this.child = null;
    if (child && child.exitCode === null) {
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** One API process (`node dist/main.js`), restartable on the same port after a kill -9. */
export class ApiInstance {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private log = '';
  readonly client: GqlClient;
  restarts = 0;

  constructor(readonly name: string, readonly port: number, private readonly env: Record<string, string>, private readonly root: string) {
    this.client = new GqlClient(`http://127.0.0.1:${port}`, 32);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get alive(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  tail(): string {
    return this.log.slice(-3000);
  }

  async start(timeoutMs = 45_000): Promise<void> {
    const child = spawn(process.execPath, [...API_COMMAND.nodeArgs, API_COMMAND.entry], {
      cwd: this.root,
      env: { ...process.env, NODE_ENV: 'test', WORKERS: '1', ...this.env, PORT: String(this.port), HOST: '127.0.0.1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const keep = (chunk: Buffer) => {
      this.log = (this.log + chunk.toString()).slice(-20_000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${this.name} exited with ${child.exitCode} before it was ready:\n${this.tail()}`);
      if (await this.ready()) return;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`${this.name} not ready within ${timeoutMs} ms:\n${this.tail()}`);
      }
      await sleep(50);
    }
  }

  async ready(): Promise<boolean> {
    try {
      const r = await fetch(`${this.url}/ready`, { signal: AbortSignal.timeout(2000) });
      await r.arrayBuffer();
      return r.status === 200;
    } catch {
      return false;
    }
  }

  /** kill -9 (by this child's pid): no shutdown hook runs. */
  async crash(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await this.exited;
  }

  /** Starts it again if it is not running (after a crash, or one that died on its own). */
  async ensureRunning(): Promise<void> {
    if (this.alive) return;
    this.restarts++;
    // A start can fail for reasons of the machine, not of the code under test (dist/ being rebuilt
    // by someone else): try a few times before giving up.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.start();
      } catch (err) {
        if (attempt >= 3) throw err;
        await sleep(1000);
      }
    }
  }

  async stop(): Promise<void> {
    await this.client.close().catch(() => undefined);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

export interface WorldOptions {
  /** Directory holding the built API (`dist/main.js`); the repository by default. */
  apiRoot?: string;
  log?: (line: string) => void;
}

/**
 * Everything the chaos runs share: a migrated database of their own, two redis-servers (a primary
 * and a replica that can be detached and failed over to) behind one proxy, one PostgreSQL proxy per
 * API instance (cut, or stall a reply), and two API processes.
 */
export class ChaosWorld {
  primary = 0;
  replicaAttached = true;
  private constructor(
    readonly databaseUrl: string,
    readonly prefix: string,
    readonly db: Db,
    readonly nodes: [RedisNode, RedisNode],
    readonly redisProxy: ChaosProxy,
    readonly pgProxies: [ChaosProxy, ChaosProxy],
    readonly apis: [ApiInstance, ApiInstance],
    /** The test's own connection, through the proxy: it follows a failover as the APIs do. */
    readonly redis: Redis,
    readonly tokens: TokenService,
    readonly admin: string,
  ) {}

  static async start(opts: WorldOptions = {}): Promise<ChaosWorld> {
    const iso = isolation('chaos');
    await ensureDatabase(iso.databaseUrl);
    const { db } = createDb(iso.databaseUrl, 4);
    const [p1, p2] = [await freePort(), await freePort()];
    const nodes: [RedisNode, RedisNode] = [new RedisNode(p1), new RedisNode(p2)];
    await Promise.all(nodes.map((n) => n.start()));
    await nodes[1].client.replicaof('127.0.0.1', p1);
    const redisProxy = await ChaosProxy.start({ host: '127.0.0.1', port: p1 });
    const pgUrl = new URL(PG_ADMIN_URL);
    const pgTarget = { host: pgUrl.hostname, port: Number(pgUrl.port || 5432) };
    const pgProxies: [ChaosProxy, ChaosProxy] = [await ChaosProxy.start(pgTarget), await ChaosProxy.start(pgTarget)];
    const redisUrl = redisProxy.urlFor('redis://127.0.0.1:6379/0');
    const env = (i: number): Record<string, string> => ({
      DATABASE_URL: pgProxies[i].urlFor(iso.databaseUrl), REDIS_URL: redisUrl, REDIS_PREFIX: iso.redisPrefix,
      JWT_SECRET, SEED_SAMPLE_SALE: 'false', LOG_LEVEL: 'warn', RATE_LIMIT_ENABLED: 'false',
      SWEEP_INTERVAL_MS: '100', DRAIN_INTERVAL_MS: '100', CONFIRM_WINDOW_MS: String(CONFIRM_WINDOW_MS),
      RECOVERY_INTERVAL_MS: '200', RECONCILE_INTERVAL_MS: '1000', DATABASE_POOL_SIZE: '10',
    });
    const root = opts.apiRoot ?? REPO_ROOT;
    const apis: [ApiInstance, ApiInstance] = [new ApiInstance('api-A', await freePort(), env(0), root), new ApiInstance('api-B', await freePort(), env(1), root)];
    // The first one migrates the database (with the migrations of the build it runs), then the second starts.
    await apis[0].start();
    await apis[1].start();
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: 20 });
    redis.on('error', () => undefined);
    const tokens = new TokenService(JWT_SECRET);
    const admin = (await tokens.sign('chaos-admin', 'admin')).token;
    const world = new ChaosWorld(iso.databaseUrl, iso.redisPrefix, db, nodes, redisProxy, pgProxies, apis, redis, tokens, admin);
    await world.replicaCaughtUp();
    return world;
  }

  get primaryNode(): RedisNode {
    return this.nodes[this.primary];
  }

  get replicaNode(): RedisNode {
    return this.nodes[1 - this.primary];
  }

  /** Waits until the replica is attached, synced and has every write the primary acknowledged so far. */
  async replicaCaughtUp(timeoutMs = 10_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const info = await this.replicaNode.info('replication').catch(() => ({}) as Record<string, string>);
      if (info.role === 'slave' && info.master_link_status === 'up' && info.master_sync_in_progress === '0') {
        const acked = Number(await this.primaryNode.client.call('WAIT', '1', '1000'));
        if (acked >= 1) return;
      }
      if (Date.now() > until) throw new Error(`the Redis replica did not catch up: ${JSON.stringify(info)}`);
      await sleep(25);
    }
  }

  /** The replica stops following the primary: from now on it misses every write. */
  async detachReplica(): Promise<void> {
    await this.replicaCaughtUp();
    await this.replicaNode.client.replicaof('NO', 'ONE');
    this.replicaAttached = false;
  }

  /** The replica follows the primary again (a full resync: what it missed comes back). */
  async reattachReplica(): Promise<void> {
    if (this.replicaAttached) return;
    await this.replicaNode.client.replicaof('127.0.0.1', this.primaryNode.port);
    this.replicaAttached = true;
    await this.replicaCaughtUp();
  }

  /**
   * Fails over to the detached replica: the proxy sends every new connection to it and resets the
   * open ones (the APIs reconnect to it), and the old primary becomes its replica.
   */
  async failover(): Promise<void> {
    if (this.replicaAttached) throw new Error('failover needs a detached replica');
    const next = 1 - this.primary;
    this.redisProxy.retarget({ host: '127.0.0.1', port: this.nodes[next].port });
    const old = this.primaryNode;
    this.primary = next;
    await old.client.replicaof('127.0.0.1', this.nodes[next].port);
    this.replicaAttached = true;
  }

  /** Waits until both instances reach Redis again (their /ready names no Redis problem; PostgreSQL may be cut). */
  async bothReachRedis(timeoutMs = 20_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    const ok = async (a: ApiInstance) => {
      try {
        const r = await fetch(`${a.url}/ready`, { signal: AbortSignal.timeout(2000) });
        const body = await r.text();
        return r.status === 200 || (r.status === 503 && !/redis/i.test(body));
      } catch {
        return false;
      }
    };
    for (;;) {
      if ((await Promise.all(this.apis.map(ok))).every(Boolean)) return;
      if (Date.now() > until) throw new Error(`instances do not reach Redis within ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  async bothReady(timeoutMs = 20_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const ok = await Promise.all(this.apis.map((a) => a.ready()));
      if (ok.every(Boolean)) return;
      if (Date.now() > until) throw new Error(`instances not ready within ${timeoutMs} ms: ${this.apis.map((a, i) => `${a.name}=${ok[i]}`).join(' ')}`);
      await sleep(50);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.apis.map((a) => a.stop().catch(() => undefined)));
    this.redis.disconnect();
    await this.redisProxy.close();
    await Promise.all(this.pgProxies.map((p) => p.close()));
    await Promise.all(this.nodes.map((n) => n.stop()));
    await this.db.destroy().catch(() => undefined);
    await dropDatabase(this.databaseUrl).catch(() => undefined);
  }
}
