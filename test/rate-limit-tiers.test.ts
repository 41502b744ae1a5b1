import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type App } from '../src/app.js';
import { createLogger } from '../src/logger.js';
import { RateBuckets } from '../src/services/rate-buckets.js';
import { createSale } from './support/fixtures.js';
import { deleteRedisPrefix, eventually, GqlClient, REDIS_URL, startTestServer, testConfig, type GqlResult, type TestServer } from './support/harness.js';
import { PURCHASE, RELEASE, RESERVE } from './support/operations.js';

// Issue 17: token buckets (GCRA) per customer, by tier, and per client address, for buying and
// fairness mutations; replays of an idempotency key draw no token.

const ME_TIER = /* GraphQL */ `query { me { id tier } }`;
const SET_TIER = /* GraphQL */ `mutation SetTier($id: ID!, $tier: CustomerTier!) { setCustomerTier(customerId: $id, tier: $tier) { id tier } }`;

const codeOf = (r: GqlResult) => r.errors?.[0]?.extensions?.code ?? r.data?.purchase?.__typename ?? r.data?.reserve?.__typename ?? 'OK';
const count = (rs: GqlResult[], code: string) => rs.filter((r) => codeOf(r) === code).length;
const retryAfter = (r: GqlResult) => r.errors![0].extensions!.retryAfterSeconds as number;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Every RATE_LIMITED answer says exactly when the next token comes: a bucket refilling one token
 * every `intervalS` whose burst was drawn during the last `elapsedMs` is full again `intervalS`
 * after its first draw, so the wait is at most `intervalS` and at least `intervalS` minus the time
 * the calls took (whole seconds, rounded up); 20 when they took under a second.
 */
function expectExactWaits(rs: GqlResult[], intervalS: number, elapsedMs: number) {
  for (const r of rs.filter((x) => codeOf(x) === 'RATE_LIMITED')) {
    expect(retryAfter(r)).toBeLessThanOrEqual(intervalS);
    expect(retryAfter(r)).toBeGreaterThanOrEqual(Math.ceil(intervalS - elapsedMs / 1000));
  }
}

/** A GraphQL call as it reaches us through one trusted proxy from `address` (TRUST_PROXY_HOPS=1). */
async function gqlFrom(client: GqlClient, address: string | null, query: string, variables: Record<string, unknown>, token?: string): Promise<GqlResult> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (address) headers['x-forwarded-for'] = address;
  const res = await client.raw(JSON.stringify({ query, variables }), headers);
  const parsed = JSON.parse(res.body);
  return { status: res.status, data: parsed.data, errors: parsed.errors, body: res.body };
}

describe('the default buying limits (issue 17 i)', () => {
  let t: TestServer;
  let itemId: string;
  beforeAll(async () => {
    // No RATE_LIMIT_* at all: what production gets.
    t = await startTestServer('rl-tier-default');
    ({ itemIds: [itemId] } = await createSale(t, { stock: 2000, perUserLimit: 1000 }));
  });
  afterAll(() => t?.close());

  const buy = (key: string, token: string) => t.client.gql(PURCHASE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: key } }, token);

  it("one customer's 200 rapid purchases: RATE_LIMITED after the burst of 10, each told exactly when to come back", async () => {
    expect(t.app.config.RATE_LIMIT_TIER_STANDARD).toEqual({ burst: 10, perSecond: 2 });
    const token = await t.token('scripted');
    const started = Date.now();
    const rs = await Promise.all(Array.from({ length: 200 }, (_, i) => buy(`rapid-${i}`, token)));
    const elapsedMs = Date.now() - started;
    const ok = count(rs, 'PurchaseSuccess');
    // The burst, plus the 2 a second refilled while the storm lasted.
    expect(ok).toBeGreaterThanOrEqual(10);
    expect(ok).toBeLessThanOrEqual(10 + Math.ceil(elapsedMs / 500));
    expect(count(rs, 'RATE_LIMITED')).toBe(200 - ok);
    for (const r of rs.filter((x) => codeOf(x) === 'RATE_LIMITED')) {
      expect(r.status).toBe(200);
      expect(r.data).toBeNull();
      // A token comes back every 0.5 s: the wait is at most that, rounded up to whole seconds.
      expect(retryAfter(r)).toBe(1);
    }
    const orders = await t.app.db.selectFrom('orders').select('id').where('customer_id', '=', 'scripted').execute();
    expect(orders).toHaveLength(ok);

    // The wait it was told is enough: after retryAfterSeconds the next attempt passes.
    const now = await buy('rapid-late-1', token);
    if (codeOf(now) === 'RATE_LIMITED') {
      await sleep(retryAfter(now) * 1000);
    } else {
      // A token had come back meanwhile; take the rest so that the next one must wait.
      let r: GqlResult;
      do r = await buy(`rapid-drain-${Date.now()}-${Math.random()}`, token); while (codeOf(r) !== 'RATE_LIMITED');
      await sleep(retryAfter(r) * 1000);
    }
    expect(codeOf(await buy('rapid-late-2', token))).toBe('PurchaseSuccess');
  });

  it('20 simultaneous sends of one key: one order and 19 replays, none RATE_LIMITED; new attempts are still limited', async () => {
    const token = await t.token('retrier');
    const rs = await Promise.all(Array.from({ length: 20 }, () => buy('one-click', token)));
    expect(count(rs, 'RATE_LIMITED')).toBe(0);
    expect(rs.map((r) => r.data.purchase.__typename)).toEqual(Array(20).fill('PurchaseSuccess'));
    expect(rs.filter((r) => r.data.purchase.replayed === false)).toHaveLength(1);
    expect(new Set(rs.map((r) => r.data.purchase.order.id)).size).toBe(1);
    const orders = await t.app.db.selectFrom('orders').select('id').where('customer_id', '=', 'retrier').execute();
    expect(orders).toHaveLength(1);

    // The 19 replays drew nothing: 9 tokens are left (plus what refilled), then new attempts are refused.
    const started = Date.now();
    const fresh = await Promise.all(Array.from({ length: 30 }, (_, i) => buy(`fresh-${i}`, token)));
    const refilled = Math.ceil((Date.now() - started) / 500) + 1;
    expect(count(fresh, 'PurchaseSuccess')).toBeGreaterThanOrEqual(9);
    expect(count(fresh, 'PurchaseSuccess')).toBeLessThanOrEqual(9 + refilled);
    expect(count(fresh, 'RATE_LIMITED')).toBe(30 - count(fresh, 'PurchaseSuccess'));

    // With the bucket empty, a replay is still answered (it is not a new attempt).
    const replays = await Promise.all(Array.from({ length: 5 }, () => buy('one-click', token)));
    for (const r of replays) expect(r.data.purchase).toMatchObject({ __typename: 'PurchaseSuccess', replayed: true, order: { id: rs[0].data.purchase.order.id } });
  });

  it('reserve too: 20 simultaneous sends of one key are one hold and 19 replays', async () => {
    const token = await t.token('reserver');
    const rs = await Promise.all(Array.from({ length: 20 }, () => t.client.gql(RESERVE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: 'hold-once' } }, token)));
    expect(count(rs, 'RATE_LIMITED')).toBe(0);
    expect(rs.map((r) => r.data.reserve.__typename)).toEqual(Array(20).fill('ReserveSuccess'));
    expect(rs.filter((r) => r.data.reserve.replayed === false)).toHaveLength(1);
    expect(new Set(rs.map((r) => r.data.reserve.reservation.id)).size).toBe(1);
  });
});

describe('tiers, and buckets per address', () => {
  let t: TestServer;
  let second: App | undefined;
  let secondClient: GqlClient | undefined;
  let jwksServer: Server;
  let rsa: Awaited<ReturnType<typeof generateKeyPair>>;
  let itemId: string;
  const ISSUER = 'https://idp.tiers.example';
  const AUDIENCE = 'flash-sale-tiers';
  // One token every 20 s: for the length of a test, each bucket is exactly its burst.
  const env = {
    RATE_LIMIT_TIER_STANDARD: 'burst:6,per_s:0.05',
    RATE_LIMIT_TIER_TRUSTED: 'burst:12,per_s:0.05',
    RATE_LIMIT_TIER_RESTRICTED: 'burst:2,per_s:0.05',
    RATE_LIMIT_BUYING_PER_IP: 'burst:25,per_s:0.05',
    TRUST_PROXY_HOPS: '1',
    CUSTOMER_TIER_REFRESH_MS: '100',
  };

  beforeAll(async () => {
    rsa = await generateKeyPair('RS256');
    const keys: JWK[] = [{ ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' }];
    jwksServer = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys })));
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    const { port } = jwksServer.address() as AddressInfo;
    t = await startTestServer('rl-tiers', { ...env, JWT_JWKS_URL: `http://127.0.0.1:${port}/jwks.json`, JWT_JWKS_ISSUER: ISSUER, JWT_JWKS_AUDIENCE: AUDIENCE });
    ({ itemIds: [itemId] } = await createSale(t, { stock: 5000, perUserLimit: 1000 }));
  });
  afterAll(async () => {
    await secondClient?.close();
    await second?.stop();
    await t?.close();
    await new Promise((resolve) => jwksServer?.close(resolve));
  });

  const idpToken = (sub: string, claims: Record<string, unknown>) =>
    new SignJWT({ role: 'customer', ...claims })
      .setProtectedHeader({ alg: 'RS256', kid: 'rsa-1', typ: 'JWT' })
      .setSubject(sub).setIssuer(ISSUER).setAudience(AUDIENCE).setIssuedAt().setExpirationTime('10m')
      .sign(rsa.privateKey);
  const buyFrom = (address: string, key: string, token: string) =>
    gqlFrom(t.client, address, PURCHASE, { input: { saleItemId: itemId, quantity: 1, idempotencyKey: key } }, token);
  const storm = (address: string, prefix: string, token: string, n = 20) =>
    Promise.all(Array.from({ length: n }, (_, i) => buyFrom(address, `${prefix}-${i}`, token)));

  it('setCustomerTier is admin-only and checks its id; me { tier } reflects it, on every instance', async () => {
    const alice = await t.token('tier-alice');
    expect((await t.client.gql(ME_TIER, {}, alice)).data.me).toEqual({ id: 'tier-alice', tier: 'STANDARD' });

    const anonymous = await t.client.gql(SET_TIER, { id: 'tier-alice', tier: 'TRUSTED' });
    expect(anonymous.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    const byCustomer = await t.client.gql(SET_TIER, { id: 'tier-alice', tier: 'TRUSTED' }, alice);
    expect(byCustomer.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    for (const id of ['', 'x'.repeat(65)]) {
      const bad = await t.client.gql(SET_TIER, { id, tier: 'TRUSTED' }, t.admin);
      expect(bad.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    }
    const badTier = await t.client.gql(SET_TIER, { id: 'tier-alice', tier: 'GOLD' }, t.admin);
    expect(badTier.errors?.length).toBeGreaterThan(0);
    expect((await t.client.gql(ME_TIER, {}, alice)).data.me.tier).toBe('STANDARD');

    const set = await t.client.gql(SET_TIER, { id: 'tier-alice', tier: 'TRUSTED' }, t.admin);
    expect(set.errors).toBeUndefined();
    expect(set.data.setCustomerTier).toEqual({ id: 'tier-alice', tier: 'TRUSTED' });
    expect((await t.client.gql(ME_TIER, {}, alice)).data.me.tier).toBe('TRUSTED');
    const row = await t.app.db.selectFrom('customer_tiers').selectAll().where('customer_id', '=', 'tier-alice').executeTakeFirstOrThrow();
    expect(row).toMatchObject({ tier: 'TRUSTED', set_by: 'admin-1' });

    // Another instance on the same database: it loads the tiers at start and follows later changes.
    const config = testConfig({ databaseUrl: t.app.config.DATABASE_URL, redisPrefix: t.app.config.REDIS_PREFIX }, env);
    second = await startApp(config, { log: createLogger(config.LOG_LEVEL), workers: false });
    secondClient = new GqlClient(second.url, 4);
    expect((await secondClient.gql(ME_TIER, {}, alice)).data.me.tier).toBe('TRUSTED');
    expect((await t.client.gql(SET_TIER, { id: 'tier-alice', tier: 'RESTRICTED' }, t.admin)).data.setCustomerTier.tier).toBe('RESTRICTED');
    await eventually(async () => (await secondClient!.gql(ME_TIER, {}, alice)).data.me.tier === 'RESTRICTED', 3000, 50);

    // The buying path asks memory, not PostgreSQL: the answer is not a promise.
    expect(t.app.services.tiers.tierOf({ id: 'tier-alice' })).toBe('RESTRICTED');
  });

  it('a RESTRICTED customer is limited sooner than a STANDARD one, a TRUSTED one later, each told when to come back', async () => {
    for (const [id, tier] of [['tier-r', 'RESTRICTED'], ['tier-t', 'TRUSTED']]) {
      expect((await t.client.gql(SET_TIER, { id, tier }, t.admin)).data.setCustomerTier.tier).toBe(tier);
    }
    const [restricted, standard, trusted] = await Promise.all(['tier-r', 'tier-s', 'tier-t'].map((c) => t.token(c)));
    // Each from an address of its own, so only the customer buckets count here.
    const started = Date.now();
    const [r, s, tr] = await Promise.all([storm('198.51.100.1', 'r', restricted), storm('198.51.100.2', 's', standard), storm('198.51.100.3', 't', trusted)]);
    const elapsedMs = Date.now() - started;
    expect([r, s, tr].map((rs) => count(rs, 'PurchaseSuccess'))).toEqual([2, 6, 12]);
    expect([r, s, tr].map((rs) => count(rs, 'RATE_LIMITED'))).toEqual([18, 14, 8]);
    // A token every 20 s, the burst drawn a moment ago: the next one is (nearly) 20 s away, for every tier.
    expectExactWaits([...r, ...s, ...tr], 20, elapsedMs);

    // Every buying and fairness mutation draws on the same bucket of the tier, not only purchase.
    const release = await gqlFrom(t.client, '198.51.100.1', RELEASE, { id: 'no-such-hold' }, restricted);
    expect(release.errors?.[0].extensions?.code).toBe('RATE_LIMITED');
    expect(release.errors?.[0].extensions?.retryAfterSeconds).toBeLessThanOrEqual(20);
    expect(release.errors?.[0].extensions?.retryAfterSeconds).toBeGreaterThanOrEqual(Math.ceil(20 - (Date.now() - started) / 1000));
  });

  it("an identity provider's tier claim sets the limits; an admin's tier wins over it", async () => {
    const claimed = await idpToken('idp-restricted', { tier: 'RESTRICTED' });
    expect((await t.client.gql(ME_TIER, {}, claimed)).data.me).toEqual({ id: 'idp-restricted', tier: 'RESTRICTED' });
    const rs = await storm('198.51.100.10', 'idp-r', claimed, 5);
    expect(count(rs, 'PurchaseSuccess')).toBe(2);
    expect(count(rs, 'RATE_LIMITED')).toBe(3);

    // An unknown tier is ignored, not a refused token.
    const odd = await idpToken('idp-odd', { tier: 'PLATINUM' });
    expect((await t.client.gql(ME_TIER, {}, odd)).data.me).toEqual({ id: 'idp-odd', tier: 'STANDARD' });

    // The admin's decision about this customer wins over the provider's claim.
    const promoted = await idpToken('idp-promoted', { tier: 'RESTRICTED' });
    expect((await t.client.gql(SET_TIER, { id: 'idp-promoted', tier: 'TRUSTED' }, t.admin)).data.setCustomerTier.tier).toBe('TRUSTED');
    expect((await t.client.gql(ME_TIER, {}, promoted)).data.me.tier).toBe('TRUSTED');
    expect(count(await storm('198.51.100.11', 'idp-p', promoted), 'PurchaseSuccess')).toBe(12);
  });

  it('one address is one bucket, whatever the tiers of the customers behind it; admins are never limited', async () => {
    const tokens = await Promise.all(Array.from({ length: 30 }, (_, i) => t.token(`behind-nat-${i}`)));
    const started = Date.now();
    const rs = await Promise.all(tokens.map((tok, i) => buyFrom('203.0.113.7', `nat-${i}`, tok)));
    expect(count(rs, 'PurchaseSuccess')).toBe(25);
    expect(count(rs, 'RATE_LIMITED')).toBe(5);
    expectExactWaits(rs, 20, Date.now() - started);

    // A TRUSTED customer behind the same address is refused too; from another address they pass.
    expect((await t.client.gql(SET_TIER, { id: 'nat-trusted', tier: 'TRUSTED' }, t.admin)).data.setCustomerTier.tier).toBe('TRUSTED');
    const trusted = await t.token('nat-trusted');
    expect(codeOf(await buyFrom('203.0.113.7', 'nat-t-1', trusted))).toBe('RATE_LIMITED');
    expect(codeOf(await buyFrom('203.0.113.8', 'nat-t-2', trusted))).toBe('PurchaseSuccess');

    const admin = await Promise.all(Array.from({ length: 40 }, (_, i) => buyFrom('203.0.113.7', `admin-${i}`, t.admin)));
    expect(count(admin, 'RATE_LIMITED')).toBe(0);
    expect(count(admin, 'PurchaseSuccess')).toBe(40);
  });
});

describe('the token buckets in Redis', () => {
  const prefix = `fstest:rbunit_${process.pid}:`;
  const a = new Redis(REDIS_URL);
  const b = new Redis(REDIS_URL);
  const buckets = [new RateBuckets(a, prefix), new RateBuckets(b, prefix)];
  afterAll(async () => {
    await deleteRedisPrefix(prefix);
    a.disconnect();
    b.disconnect();
  });

  it('charge atomically over several connections, and say exactly when the next token comes', async () => {
    const check = buckets[0].check('burst', { burst: 37, perSecond: 0.01 });
    const started = Date.now();
    const verdicts = await Promise.all(Array.from({ length: 300 }, (_, i) => buckets[i % 2].charge([check])));
    const elapsed = Date.now() - started;
    expect(verdicts.filter((v) => v.allowed)).toHaveLength(37);
    for (const v of verdicts.filter((x) => !x.allowed)) {
      expect(v.retryAfterMs).toBeLessThanOrEqual(100_000);
      expect(v.retryAfterMs).toBeGreaterThanOrEqual(100_000 - elapsed - 5);
    }
    // A key lives until its bucket would be full again, no longer.
    expect(await a.pttl(check.key)).toBeLessThanOrEqual(37 * 100_000);

    const fast = buckets[0].check('fast', { burst: 2, perSecond: 10 });
    expect((await buckets[0].charge([fast])).allowed).toBe(true);
    expect((await buckets[1].charge([fast])).allowed).toBe(true);
    const refused = await buckets[0].charge([fast]);
    expect(refused.allowed).toBe(false);
    expect(refused.retryAfterMs).toBeGreaterThan(0);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(100);
    await sleep(refused.retryAfterMs + 2);
    expect((await buckets[1].charge([fast])).allowed).toBe(true);
  });

  it('charge the buckets of one call all or none, a key named twice twice, and give tokens back', async () => {
    const full = buckets[0].check('one-left', { burst: 1, perSecond: 0.01 });
    const empty = buckets[0].check('none-left', { burst: 1, perSecond: 0.01 });
    expect((await buckets[0].charge([empty])).allowed).toBe(true);
    // Refused by `empty`: `full` keeps its token.
    expect((await buckets[0].charge([full, empty])).allowed).toBe(false);
    expect((await buckets[0].charge([full])).allowed).toBe(true);

    const pair = buckets[0].check('pair', { burst: 3, perSecond: 0.01 });
    expect((await buckets[0].charge([pair, pair])).allowed).toBe(true);
    expect((await buckets[0].charge([pair, pair])).allowed).toBe(false);
    expect((await buckets[0].charge([pair])).allowed).toBe(true);
    expect((await buckets[0].charge([pair])).allowed).toBe(false);
    await buckets[1].refund([pair]);
    expect((await buckets[0].charge([pair])).allowed).toBe(true);
    // Given back more than was drawn: a full bucket, no key.
    await buckets[1].refund([pair, pair, pair, pair]);
    expect(await a.exists(pair.key)).toBe(0);
  });
});
