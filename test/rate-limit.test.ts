import type { IncomingMessage } from 'node:http';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type App } from '../src/app.js';
import { parseConfig } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { BUYING_FIELDS, buyingLimitsFromConfig, clientAddress, rateLimitsFromConfig } from '../src/server/rate-limit.js';
import { RateCounter } from '../src/services/rate-counter.js';
import { createSale } from './support/fixtures.js';
import { monitorRedis } from './support/redis-monitor.js';
import { deleteRedisPrefix, GqlClient, REDIS_URL, startTestServer, testConfig, type GqlResult, type TestServer } from './support/harness.js';
import { CANCEL_ORDER, CONFIRM, PURCHASE, RELEASE, RESERVE, SALE } from './support/operations.js';

const LOGIN = `mutation($email: String!, $password: String!) { login(email: $email, password: $password) { customerId } }`;
const REGISTER = `mutation($email: String!, $password: String!) { register(email: $email, password: $password) { customerId } }`;

const codeOf = (r: GqlResult) => r.errors?.[0]?.extensions?.code ?? r.data?.purchase?.__typename ?? 'OK';
const count = (rs: GqlResult[], code: string) => rs.filter((r) => codeOf(r) === code).length;

/** Every RATE_LIMITED answer is HTTP 200 with an integer retryAfterSeconds of at least 1. */
function expectWellFormedLimits(rs: GqlResult[], windowSeconds: number) {
  for (const r of rs) {
    expect(r.status).toBe(200);
    if (codeOf(r) !== 'RATE_LIMITED') continue;
    const s = r.errors![0].extensions!.retryAfterSeconds;
    expect(Number.isInteger(s)).toBe(true);
    expect(s).toBeGreaterThanOrEqual(1);
    expect(s).toBeLessThanOrEqual(windowSeconds);
  }
}

const buy = (client: GqlClient, itemId: string, key: string, token: string) =>
  client.gql(PURCHASE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: key } }, token);

describe('login and register limits', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer('rl-auth', { RATE_LIMIT_AUTH_PER_EMAIL: '5/60s', RATE_LIMIT_AUTH_PER_IP: '1000/60s' });
  });
  afterAll(() => t?.close());

  it('20 rapid wrong logins for one email: exactly 5 are checked, 15 are RATE_LIMITED, then even the right password', async () => {
    const email = `victim-${process.pid}@example.com`;
    const created = await t.app.services.accounts.register(email, 'correct horse battery');
    expect(created.ok).toBe(true);

    const attempts = await Promise.all(Array.from({ length: 20 }, (_, i) => t.client.gql(LOGIN, { email, password: `guess-number-${i}` })));
    expectWellFormedLimits(attempts, 60);
    expect(count(attempts, 'UNAUTHENTICATED')).toBe(5);
    expect(count(attempts, 'RATE_LIMITED')).toBe(15);
    const limited = attempts.find((r) => codeOf(r) === 'RATE_LIMITED')!;
    expect(limited.data).toBeNull();
    expect(limited.errors![0].path).toEqual(['login']);

    // The limit stands before the password check: a correct guess now is refused too.
    const right = await t.client.gql(LOGIN, { email: ` ${email.toUpperCase()} `, password: 'correct horse battery' });
    expect(codeOf(right)).toBe('RATE_LIMITED');
    // Other emails are unaffected.
    const other = await t.client.gql(LOGIN, { email: `someone-else-${process.pid}@example.com`, password: 'whatever-password' });
    expect(codeOf(other)).toBe('UNAUTHENTICATED');
  });

  it('counts every alias: one request cannot carry many guesses past the limit', async () => {
    const email = `aliased-${process.pid}@example.com`;
    const aliases = Array.from({ length: 8 }, (_, i) => `a${i}: login(email: $email, password: "guess-${i}-xxxxxx") { customerId }`).join('\n');
    const r = await t.client.gql(`mutation($email: String!) { ${aliases} }`, { email });
    expect(r.status).toBe(200);
    expect(r.data).toBeNull();
    expect(r.errors!.every((e) => e.extensions?.code === 'RATE_LIMITED')).toBe(true);
    expect(r.errors!.map((e) => e.path![0]).sort()).toEqual(['a5', 'a6', 'a7']);
  });

  it('register shares the per-email budget', async () => {
    const email = `reg-${process.pid}@example.com`;
    const rs = await Promise.all(Array.from({ length: 8 }, () => t.client.gql(REGISTER, { email, password: 'long-enough-password' })));
    expect(count(rs, 'OK')).toBe(1);
    expect(count(rs, 'BAD_USER_INPUT')).toBe(4);
    expect(count(rs, 'RATE_LIMITED')).toBe(3);
  });
});

describe('buying limits per customer', () => {
  let t: TestServer;
  let itemId: string;
  beforeAll(async () => {
    // A bucket of 5 refilled once every 50 s: for the length of these tests, a budget of 5.
    t = await startTestServer('rl-buy', { RATE_LIMIT_TIER_STANDARD: 'burst:5,per_s:0.02', RATE_LIMIT_BUYING_PER_IP: 'burst:100000,per_s:100000' });
    ({ itemIds: [itemId] } = await createSale(t, { stock: 500, perUserLimit: 100 }));
  });
  afterAll(() => t?.close());

  it('lets exactly the limit through, and a limited purchase changes nothing', async () => {
    const token = await t.token('greedy');
    const rs = await Promise.all(Array.from({ length: 12 }, (_, i) => buy(t.client, itemId, `g-${i}`, token)));
    expectWellFormedLimits(rs, 60);
    expect(count(rs, 'PurchaseSuccess')).toBe(5);
    expect(count(rs, 'RATE_LIMITED')).toBe(7);
    const orders = await t.app.db.selectFrom('orders').select('id').where('customer_id', '=', 'greedy').execute();
    expect(orders).toHaveLength(5);
    const item = await t.client.gql(SALE, { id: (await t.app.db.selectFrom('sale_items').select('sale_id').where('id', '=', itemId).executeTakeFirstOrThrow()).sale_id });
    expect(item.data.sale.items[0].sold).toBe(5);

    // Another customer from the same IP has a budget of their own.
    expect(codeOf(await buy(t.client, itemId, 'other-1', await t.token('patient')))).toBe('PurchaseSuccess');
  });

  it('every buying and fairness mutation draws on the same budget; queries are not limited', async () => {
    const token = await t.token('greedy');
    const calls = [
      t.client.gql(RESERVE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: 'r-1' } }, token),
      t.client.gql(CONFIRM, { id: 'res-x' }, token),
      t.client.gql(RELEASE, { id: 'res-x' }, token),
      t.client.gql(CANCEL_ORDER, { id: 'ord-x' }, token),
    ];
    for (const r of await Promise.all(calls)) expect(r.errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
    for (let i = 0; i < 10; i++) {
      const q = await t.client.gql(`{ me { id } serverTime }`, {}, token);
      expect(q.errors).toBeUndefined();
    }
    // The fields of issue #5 not built yet are configured by name and covered once they exist.
    const limits = buyingLimitsFromConfig(t.app.config);
    for (const field of ['purchase', 'reserve', 'confirmReservation', 'releaseReservation', 'cancelOrder', 'joinWaitlist', 'leaveWaitlist', 'joinQueue']) {
      expect(limits.filter((l) => l.fields.has(field)).map((l) => l.by).sort()).toEqual(['customer', 'ip']);
    }
    expect([...BUYING_FIELDS].sort()).toHaveLength(8);
  });

  it('a lone purchase is decided in one Redis command: the reserve script charges its buckets itself', async () => {
    const token = await t.token('one-trip');
    const prefix = t.app.config.REDIS_PREFIX;
    let r!: GqlResult;
    // MONITOR sees every client of this shared Redis, and the calls scripts make: keep the
    // commands sent over the network that name our keys.
    const seen = (await monitorRedis(REDIS_URL, async () => {
      r = await buy(t.client, itemId, 'one-trip-1', token);
    })).filter((c) => c.source !== 'lua' && c.args.some((a) => a.startsWith(prefix))).map((c) => c.args);
    expect(codeOf(r)).toBe('PurchaseSuccess');
    const counted = seen.filter((args) => args.some((a) => a === `${prefix}rb:buy:customer:one-trip`));
    expect(counted).toHaveLength(1);
    // The same command is the reserve decision: it names the sale's meta key and both buckets.
    expect(counted[0][0].toLowerCase()).toBe('evalsha');
    expect(counted[0].some((a) => /\{sale:[^}]+\}:meta$/.test(a))).toBe(true);
    expect(counted[0].some((a) => a.startsWith(`${prefix}rb:buy:ip:`))).toBe(true);
  });

  it('two buying fields in one operation are counted before anything runs', async () => {
    const token = await t.token('pair');
    const PAIR = `mutation($i: ID!) {
      a: purchase(input: { saleItemId: $i, quantity: 1, idempotencyKey: "pair-a" }) { __typename }
      b: purchase(input: { saleItemId: $i, quantity: 1, idempotencyKey: "pair-b" }) { __typename }
    }`;
    // Budget 5: two pairs take 4, the third pair needs 2 of the 1 left and nothing of it runs
    // (nor does it draw the 1 left: the next lone purchase still gets it).
    for (let i = 0; i < 2; i++) expect((await t.client.gql(PAIR.replaceAll('pair-', `pair${i}-`), { i: itemId }, token)).data?.a.__typename).toBe('PurchaseSuccess');
    const limited = await t.client.gql(PAIR, { i: itemId }, token);
    expect(limited.data).toBeNull();
    expect(limited.errors?.map((e) => e.extensions?.code)).toContain('RATE_LIMITED');
    expect(codeOf(await buy(t.client, itemId, 'pair-last', token))).toBe('PurchaseSuccess');
    const orders = await t.app.db.selectFrom('orders').select('id').where('customer_id', '=', 'pair').execute();
    expect(orders).toHaveLength(5);
  });

  it('admins are never limited', async () => {
    const rs = await Promise.all(Array.from({ length: 15 }, (_, i) => buy(t.client, itemId, `admin-${i}`, t.admin)));
    expect(count(rs, 'RATE_LIMITED')).toBe(0);
    expect(count(rs, 'PurchaseSuccess')).toBe(15);
  });
});

describe('limits per IP', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer('rl-ip', {
      RATE_LIMIT_TIER_STANDARD: 'burst:1000,per_s:1000', RATE_LIMIT_BUYING_PER_IP: 'burst:8,per_s:0.02',
      RATE_LIMIT_AUTH_PER_EMAIL: '1000/60s', RATE_LIMIT_AUTH_PER_IP: '6/60s',
    });
  });
  afterAll(() => t?.close());

  it('many customers from one address share its buying budget', async () => {
    const { itemIds } = await createSale(t, { stock: 100 });
    const tokens = await Promise.all(Array.from({ length: 15 }, (_, i) => t.token(`ip-customer-${i}`)));
    const rs = await Promise.all(tokens.map((tok, i) => buy(t.client, itemIds[0], `k-${i}`, tok)));
    expectWellFormedLimits(rs, 60);
    expect(count(rs, 'PurchaseSuccess')).toBe(8);
    expect(count(rs, 'RATE_LIMITED')).toBe(7);
  });

  it('many emails from one address share its login budget', async () => {
    const rs = await Promise.all(Array.from({ length: 10 }, (_, i) => t.client.gql(LOGIN, { email: `spray-${i}@example.com`, password: 'password-123' })));
    expect(count(rs, 'UNAUTHENTICATED')).toBe(6);
    expect(count(rs, 'RATE_LIMITED')).toBe(4);
  });
});

describe('one limit across instances', () => {
  let t: TestServer;
  let second: App;
  beforeAll(async () => {
    const env = { RATE_LIMIT_TIER_STANDARD: 'burst:10,per_s:0.02' };
    t = await startTestServer('rl-multi', env);
    // A second instance on the same PostgreSQL database and Redis prefix, as behind a load balancer.
    const config = testConfig({ databaseUrl: t.app.config.DATABASE_URL, redisPrefix: t.app.config.REDIS_PREFIX }, env);
    second = await startApp(config, { log: createLogger(config.LOG_LEVEL), workers: false });
  });
  afterAll(async () => {
    await second?.stop();
    await t?.close();
  });

  it('40 simultaneous purchases by one customer spread over two servers: exactly 10 get through', async () => {
    const { itemIds } = await createSale(t, { stock: 500, perUserLimit: 100 });
    const token = await t.token('everywhere');
    const clients = [t.client, new GqlClient(second.url)];
    const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => buy(clients[i % 2], itemIds[0], `m-${i}`, token)));
    await clients[1].close();
    expectWellFormedLimits(rs, 60);
    expect(count(rs, 'PurchaseSuccess')).toBe(10);
    expect(count(rs, 'RATE_LIMITED')).toBe(30);
  });
});

describe('the Redis counter', () => {
  const prefix = `fstest:rlunit_${process.pid}:`;
  const a = new Redis(REDIS_URL);
  const b = new Redis(REDIS_URL);
  afterAll(async () => {
    await deleteRedisPrefix(prefix);
    a.disconnect();
    b.disconnect();
  });

  it('counts atomically over several connections and reopens when the window ends', async () => {
    const counters = [new RateCounter(a, prefix), new RateCounter(b, prefix)];
    const rule = { max: 37, windowMs: 1500 };
    const hits = await Promise.all(Array.from({ length: 300 }, (_, i) => counters[i % 2].hit(counters[i % 2].check('burst', rule))));
    expect(hits.filter((h) => h.allowed)).toHaveLength(37);
    expect(new Set(hits.map((h) => h.hits)).size).toBe(300);
    for (const h of hits) expect(h.retryAfterMs).toBeGreaterThan(0);
    for (const h of hits) expect(h.retryAfterMs).toBeLessThanOrEqual(1500);
    expect(await a.pttl(`${prefix}rl:burst`)).toBeGreaterThan(0);

    await new Promise((r) => setTimeout(r, Math.max(...hits.map((h) => h.retryAfterMs)) + 50));
    const after = await counters[0].hit(counters[0].check('burst', rule));
    expect(after).toMatchObject({ allowed: true, hits: 1 });
  });

  it('knows the caller by socket address, or by what trusted proxies appended; IPv6 per /64', () => {
    const req = (remoteAddress: string, xff?: string) => ({ socket: { remoteAddress }, headers: xff ? { 'x-forwarded-for': xff } : {} }) as unknown as IncomingMessage;
    expect(clientAddress(req('10.0.0.5', '1.2.3.4'), 0)).toBe('10.0.0.5');
    expect(clientAddress(req('10.0.0.5', 'spoofed, 1.2.3.4'), 1)).toBe('1.2.3.4');
    expect(clientAddress(req('::ffff:192.168.1.9'), 0)).toBe('192.168.1.9');
    expect(clientAddress(req('2001:db8:abcd:12:1::7'), 0)).toBe('2001:db8:abcd:12::/64');
    expect(clientAddress(req('2001:db8:abcd:12:ffff::1'), 0)).toBe(clientAddress(req('2001:db8:abcd:0012::9'), 0));
    expect(clientAddress(req('::1'), 0)).toBe('0:0:0:0::/64');
  });

  it('reads limits from the environment: buying limits that fit a person, generous ones per address', () => {
    const defaults = parseConfig({});
    // Issue 17: a burst of 10, then 2 a second (a fixed window of 200 per 10 s let a script try 20 a second).
    expect(defaults.RATE_LIMIT_TIER_STANDARD).toEqual({ burst: 10, perSecond: 2 });
    expect(defaults.RATE_LIMIT_TIER_TRUSTED.burst).toBeGreaterThan(10);
    expect(defaults.RATE_LIMIT_TIER_RESTRICTED.burst).toBeLessThan(10);
    expect(defaults.RATE_LIMIT_BUYING_PER_IP.burst).toBeGreaterThanOrEqual(5000);
    expect(parseConfig({ RATE_LIMIT_TIER_RESTRICTED: 'burst:3,per_s:0.5' }).RATE_LIMIT_TIER_RESTRICTED).toEqual({ burst: 3, perSecond: 0.5 });
    // The fixed-window form still parses: burst max, refilled at max per window.
    expect(parseConfig({ RATE_LIMIT_BUYING_PER_IP: '8/4s' }).RATE_LIMIT_BUYING_PER_IP).toEqual({ burst: 8, perSecond: 2 });
    expect(() => parseConfig({ RATE_LIMIT_TIER_TRUSTED: 'lots' })).toThrow(/RATE_LIMIT_TIER_TRUSTED/);
    expect(() => parseConfig({ RATE_LIMIT_TIER_TRUSTED: 'burst:0,per_s:1' })).toThrow(/RATE_LIMIT_TIER_TRUSTED/);
    // The fixed window it replaces is refused, not silently dropped.
    expect(() => parseConfig({ RATE_LIMIT_BUYING_PER_CUSTOMER: '200/10s' })).toThrow(/RATE_LIMIT_BUYING_PER_CUSTOMER.*RATE_LIMIT_TIER_STANDARD/);
    expect(parseConfig({ RATE_LIMIT_AUTH_PER_EMAIL: '3/2m' }).RATE_LIMIT_AUTH_PER_EMAIL).toEqual({ max: 3, windowMs: 120_000 });
    expect(() => parseConfig({ RATE_LIMIT_AUTH_PER_EMAIL: 'lots' })).toThrow(/RATE_LIMIT_AUTH_PER_EMAIL/);
    expect(rateLimitsFromConfig(parseConfig({ RATE_LIMIT_ENABLED: 'false' }))).toEqual([]);
    expect(buyingLimitsFromConfig(parseConfig({ RATE_LIMIT_ENABLED: 'false' }))).toEqual([]);
  });
});
