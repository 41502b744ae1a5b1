import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import type pg from 'pg';
import pino from 'pino';
import { Agent, request } from 'undici';
import { parseConfig, type Config } from '../../src/config.js';
import { startApp, type App } from '../../src/app.js';
import { createLogger } from '../../src/logger.js';
import { TokenService } from '../../src/services/auth.js';
import { deleteKeysWithPrefix, dropDatabase } from '../../src/dev/scratch.js';
import { createDb, ensureDatabase, migrateToLatest } from '../../src/db/database.js';

export const PG_ADMIN_URL = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';

/** A database name and Redis key prefix of the test file's own, so files run in parallel. */
export function isolation(label: string) {
  const tag = `${label.replace(/[^a-z0-9]/gi, '').toLowerCase().slice(0, 20)}_${randomBytes(4).toString('hex')}`;
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/fs_test_${tag}`;
  return { databaseUrl: url.toString(), redisPrefix: `fstest:${tag}:` };
}

export function testConfig(iso: { databaseUrl: string; redisPrefix: string }, extra: Record<string, string> = {}): Config {
  return parseConfig({
    NODE_ENV: 'test',
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: iso.databaseUrl,
    REDIS_URL,
    REDIS_PREFIX: iso.redisPrefix,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    SEED_SAMPLE_SALE: 'false',
    SWEEP_INTERVAL_MS: '100',
    DRAIN_INTERVAL_MS: '100',
    // Tests query and subscribe far faster than people, all from 127.0.0.1; query-rate-limit.test.ts sets its own.
    RATE_LIMIT_QUERY_PER_CUSTOMER: 'off',
    RATE_LIMIT_QUERY_PER_IP: 'off',
    RATE_LIMIT_SUBSCRIBE_PER_CUSTOMER: 'off',
    RATE_LIMIT_SUBSCRIBE_PER_IP: 'off',
    ...extra,
  });
}

export { dropDatabase };

/**
 * A database (created and migrated) and Redis prefix of a test's own, for server processes it
 * starts itself (several processes must not race to migrate); `cleanups` gets their removal.
 */
export async function preparedIsolation(label: string, cleanups: (() => Promise<unknown>)[]): Promise<ReturnType<typeof isolation>> {
  const iso = isolation(label);
  await ensureDatabase(iso.databaseUrl);
  const { db } = createDb(iso.databaseUrl, 2);
  await migrateToLatest(db);
  await db.destroy();
  cleanups.push(async () => {
    await dropDatabase(iso.databaseUrl);
    await deleteRedisPrefix(iso.redisPrefix);
  });
  return iso;
}

export async function deleteRedisPrefix(prefix: string): Promise<void> {
  await deleteKeysWithPrefix(REDIS_URL, prefix);
}

export interface GqlResult<T = any> {
  status: number;
  data: T;
  errors?: { message: string; extensions?: Record<string, any>; path?: string[] }[];
  body: string;
}

/** A GraphQL-over-HTTP client on a pool of many connections (like many customers' phones). */
export class GqlClient {
  readonly agent: Agent;
  constructor(readonly url: string, connections = 256) {
    this.agent = new Agent({ connections, pipelining: 1, keepAliveTimeout: 30_000 });
  }

  async raw(body: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
    const res = await request(`${this.url}/graphql`, {
      method: 'POST', dispatcher: this.agent, body,
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', ...headers },
    });
    return { status: res.statusCode, body: await res.body.text() };
  }

  async gql<T = any>(query: string, variables: Record<string, unknown> = {}, token?: string): Promise<GqlResult<T>> {
    const res = await this.raw(JSON.stringify({ query, variables }), token ? { authorization: `Bearer ${token}` } : {});
    const parsed = JSON.parse(res.body);
    return { status: res.status, data: parsed.data, errors: parsed.errors, body: res.body };
  }

  close() {
    return this.agent.close();
  }
}

export interface TestServer {
  /** Every log line (JSON), when started with `captureLogs`. */
  logs: Record<string, any>[];
  app: App;
  client: GqlClient;
  tokens: TokenService;
  admin: string;
  token(subject: string, role?: 'customer' | 'admin'): Promise<string>;
  close(): Promise<void>;
}

/**
 * Starts a real server on a free port with its own database and Redis prefix; with `captureLogs`
 * its log lines at that level and above are kept in `logs` (else logging follows LOG_LEVEL).
 */
export async function startTestServer(label: string, extraEnv: Record<string, string> = {}, opts: { captureLogs?: pino.Level } = {}): Promise<TestServer> {
  const iso = isolation(label);
  const config = testConfig(iso, extraEnv);
  const logs: Record<string, any>[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  const log = opts.captureLogs ? pino({ level: opts.captureLogs }, sink) : createLogger(config.LOG_LEVEL);
  const app = await startApp(config, { log });
  const client = new GqlClient(app.url);
  const tokens = new TokenService(config.JWT_SECRET);
  const admin = (await tokens.sign('admin-1', 'admin')).token;
  return {
    logs, app, client, tokens, admin,
    token: async (subject, role = 'customer') => (await tokens.sign(subject, role)).token,
    close: async () => {
      await client.close();
      await app.stop();
      await dropDatabase(iso.databaseUrl);
      await deleteRedisPrefix(iso.redisPrefix);
    },
  };
}

/** Two instances in this process on one database and Redis prefix, as behind a load balancer. */
export interface InstancePair {
  a: App;
  b: App;
  /** Instance A as a TestServer, for the fixtures. */
  t: TestServer;
  onA: GqlClient;
  onB: GqlClient;
  /** Stops both, drops the database and deletes the prefix's keys. */
  close(): Promise<void>;
}

export async function startInstancePair(iso: ReturnType<typeof isolation>, extraEnv: Record<string, string> = {}): Promise<InstancePair> {
  const config = testConfig(iso, extraEnv);
  const a = await startApp(config, { log: createLogger(config.LOG_LEVEL) });
  const b = await startApp(config, { log: createLogger(config.LOG_LEVEL) });
  const onA = new GqlClient(a.url, 16);
  const onB = new GqlClient(b.url, 16);
  const tokens = new TokenService(config.JWT_SECRET);
  const admin = (await tokens.sign('admin-1', 'admin')).token;
  const t: TestServer = {
    logs: [], app: a, client: onA, tokens, admin,
    token: async (subject, role = 'customer') => (await tokens.sign(subject, role)).token,
    close: async () => undefined,
  };
  return {
    a, b, t, onA, onB,
    close: async () => {
      await onA.close();
      await onB.close();
      await b.stop();
      await a.stop();
      await dropDatabase(iso.databaseUrl);
      await deleteRedisPrefix(iso.redisPrefix);
    },
  };
}

/**
 * Waits until a statement of `locker`'s database waits for a lock, such as one `locker` holds in
 * an open transaction; if none does in time, fails with the database's ungranted locks and sessions.
 */
export async function lockWaiterSeen(locker: pg.Client, timeoutMs = 15_000): Promise<void> {
  const waiting = async () =>
    (await locker.query(`SELECT l.pid, l.mode, l.relation::regclass::text AS relation FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE d.datname = current_database() AND NOT l.granted`)).rows;
  try {
    await eventually(async () => (await waiting()).length > 0, timeoutMs, 20);
  } catch {
    const sessions = (await locker.query(`SELECT pid, state, wait_event_type, wait_event, left(query, 120) AS query FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'`)).rows;
    throw new Error(`no statement waited for a lock within ${timeoutMs} ms; ungranted locks: ${JSON.stringify(await waiting())}; sessions: ${JSON.stringify(sessions)}`);
  }
}

/** Waits until `check` returns a truthy value or the time is up. */
export async function eventually<T>(check: () => Promise<T | null | undefined | false>, timeoutMs = 5000, everyMs = 50): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
