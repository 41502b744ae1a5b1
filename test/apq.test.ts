import { createHash } from 'node:crypto';
import { ApolloClient, ApolloLink, gql, HttpLink, InMemoryCache } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isolation, REDIS_URL, startInstancePair, startTestServer, type GqlClient, type InstancePair, type TestServer } from './support/harness.js';
import { createSale } from './support/fixtures.js';
import { SALE as SALE_LEVELS } from './support/operations.js';
import { freePort, RedisProcess } from './support/redis-process.js';
import persistedDocuments from '../src/generated/graphql/persisted-documents.json' with { type: 'json' };

/**
 * Automatic persisted queries (src/server/apq.ts): a hash sent with its text is registered in
 * Redis for every instance; a hash alone then answers; an unknown hash is 404
 * PERSISTED_QUERY_NOT_FOUND (the client resends its text); a text whose hash is not the one sent is
 * refused and never registered.
 */

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
/** A document nobody persisted (not in persisted-documents.json), unique per run. */
const fresh = (tag: string) => `query Apq${tag}${Date.now()} { serverTime }`;
const apq = (hash: string) => ({ persistedQuery: { version: 1, sha256Hash: hash } });

async function post(client: GqlClient, body: Record<string, unknown>) {
  const res = await client.raw(JSON.stringify(body));
  return { status: res.status, body: JSON.parse(res.body) as { data?: any; errors?: { message: string; extensions?: Record<string, any> }[] } };
}

describe('automatic persisted queries on two instances sharing Redis', () => {
  let pair: InstancePair;
  let redis: Redis;
  let prefix: string;
  beforeAll(async () => {
    const iso = isolation('apq');
    prefix = iso.redisPrefix;
    pair = await startInstancePair(iso);
    redis = new Redis(REDIS_URL);
  });
  afterAll(async () => {
    redis?.disconnect();
    await pair?.close();
  });

  it('answers an unknown hash with 404 PERSISTED_QUERY_NOT_FOUND, on both instances, without a 500 or a masked code', async () => {
    for (const client of [pair.onA, pair.onB]) {
      const r = await post(client, { extensions: apq(sha256(fresh('unknown'))) });
      expect(r.status).toBe(404);
      expect(r.body.errors?.[0]).toMatchObject({ message: 'PersistedQueryNotFound', extensions: { code: 'PERSISTED_QUERY_NOT_FOUND' } });
      expect(r.body.data).toBeUndefined();
    }
  });

  it('registers hash + text, and the next hash-only request answers on the other instance', async () => {
    const text = fresh('shared');
    const hash = sha256(text);
    const registered = await post(pair.onA, { query: text, extensions: apq(hash) });
    expect(registered.status).toBe(200);
    expect(typeof registered.body.data?.serverTime).toBe('string');
    expect(await redis.get(`${prefix}apq:${hash}`)).toBe(text);
    expect(await redis.ttl(`${prefix}apq:${hash}`)).toBeGreaterThan(3600);

    const onB = await post(pair.onB, { extensions: apq(hash) });
    expect(onB.status).toBe(200);
    expect(onB.body.errors).toBeUndefined();
    expect(typeof onB.body.data?.serverTime).toBe('string');
    // And on the instance that registered it, with variables and an operation name.
    const onA = await post(pair.onA, { extensions: apq(hash), operationName: text.split(' ')[1], variables: {} });
    expect(onA.status).toBe(200);
    expect(typeof onA.body.data?.serverTime).toBe('string');
  });

  it('refuses a text whose hash is not the one sent, and never registers it', async () => {
    const text = fresh('claimed');
    const wrong = sha256(fresh('other'));
    const refused = await post(pair.onA, { query: text, extensions: apq(wrong) });
    expect(refused.status).toBe(400);
    expect(refused.body.errors?.[0].extensions?.code).toBe('PERSISTED_QUERY_MISMATCH');
    expect(refused.body.data).toBeUndefined();
    expect(await redis.exists(`${prefix}apq:${wrong}`)).toBe(0);
    for (const client of [pair.onA, pair.onB]) {
      const later = await post(client, { extensions: apq(wrong) });
      expect(later.status).toBe(404);
      expect(later.body.errors?.[0].extensions?.code).toBe('PERSISTED_QUERY_NOT_FOUND');
    }
  });

  it('answers trusted documents by hash from memory, never writing them to Redis', async () => {
    const { saleId } = await createSale(pair.t, { stock: 3 });
    const id = Object.entries(persistedDocuments as Record<string, string>).find(([, text]) => text.includes('query SaleLevels'))![0];
    const hash = id.replace(/^sha256:/, '');
    const byHash = await post(pair.onB, { extensions: apq(hash), variables: { id: saleId } });
    expect(byHash.status).toBe(200);
    expect(byHash.body.data.sale.id).toBe(saleId);
    // Its text with its hash registers nothing either: it is already known.
    const text = (persistedDocuments as Record<string, string>)[id];
    expect((await post(pair.onA, { query: text, extensions: apq(hash), variables: { id: saleId } })).body.data.sale.id).toBe(saleId);
    expect(await redis.exists(`${prefix}apq:${hash}`)).toBe(0);
    // A text of the client's own that is not the trusted one (the test's SALE constant) registers under its own hash.
    const own = sha256(SALE_LEVELS);
    expect((await post(pair.onA, { query: SALE_LEVELS, extensions: apq(own), variables: { id: saleId } })).body.data.sale.id).toBe(saleId);
    expect((await post(pair.onB, { extensions: apq(own), variables: { id: saleId } })).body.data.sale.id).toBe(saleId);
  });

  it('does not register a text longer than APQ_MAX_QUERY_BYTES, but answers it', async () => {
    const text = `query ApqLong${Date.now()} { serverTime ${'# padding\n'.repeat(2000)}}`;
    const hash = sha256(text);
    const r = await post(pair.onA, { query: text, extensions: apq(hash) });
    expect(r.status).toBe(200);
    expect(typeof r.body.data?.serverTime).toBe('string');
    expect(await redis.exists(`${prefix}apq:${hash}`)).toBe(0);
    expect((await post(pair.onB, { extensions: apq(hash) })).status).toBe(404);
  });
});

describe("Apollo Client's PersistedQueryLink against a running server", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer('apqapollo');
  });
  afterAll(async () => {
    await t?.close();
  });

  it('registers on the first query, then sends the hash alone and gets data: no doubled requests', async () => {
    const bodies: Record<string, any>[] = [];
    const statuses: number[] = [];
    const countingFetch: typeof fetch = async (input, init) => {
      bodies.push(JSON.parse(String(init?.body)));
      const res = await fetch(input, init);
      statuses.push(res.status);
      return res;
    };
    const client = new ApolloClient({
      link: ApolloLink.from([
        new PersistedQueryLink({ sha256: (text: string) => createHash('sha256').update(text).digest('hex') }),
        new HttpLink({ uri: `${t.app.url}/graphql`, fetch: countingFetch }),
      ]),
      cache: new InMemoryCache(),
    });
    const QUERY = gql(`query ApolloApq${Date.now()} { serverTime }`);

    const first = await client.query({ query: QUERY, fetchPolicy: 'network-only' });
    expect(typeof (first.data as { serverTime: string }).serverTime).toBe('string');
    // Hash alone (unknown) then hash + text, which registers it.
    expect(bodies.map((b) => typeof b.query)).toEqual(['undefined', 'string']);
    expect(statuses).toEqual([404, 200]);

    for (let i = 0; i < 3; i++) {
      const again = await client.query({ query: QUERY, fetchPolicy: 'network-only' });
      expect(typeof (again.data as { serverTime: string }).serverTime).toBe('string');
    }
    expect(bodies).toHaveLength(5);
    for (const body of bodies.slice(2)) {
      expect(body.query).toBeUndefined();
      expect(body.extensions.persistedQuery.sha256Hash).toBe(bodies[0].extensions.persistedQuery.sha256Hash);
    }
    expect(statuses.slice(2)).toEqual([200, 200, 200]);
  });
});

describe('APQ while Redis is unavailable', () => {
  let redis: RedisProcess;
  let t: TestServer;
  beforeAll(async () => {
    redis = new RedisProcess(await freePort());
    await redis.start();
    t = await startTestServer('apqredisdown', { REDIS_URL: redis.url, RATE_LIMIT_ENABLED: 'false', RESPONSE_CACHE_ENABLED: 'false' });
  });
  afterAll(async () => {
    await t?.close().catch(() => undefined);
    await redis?.kill();
  });

  it('answers NOT_FOUND for a hash it cannot look up and runs the resent text: never a 500', async () => {
    const known = fresh('beforeloss');
    expect((await post(t.client, { query: known, extensions: apq(sha256(known)) })).status).toBe(200);
    await redis.kill();
    const text = fresh('down');
    const hash = sha256(text);
    const started = Date.now();
    const missing = await post(t.client, { extensions: apq(hash) });
    expect(missing.status).toBe(404);
    expect(missing.body.errors?.[0].extensions?.code).toBe('PERSISTED_QUERY_NOT_FOUND');
    const resent = await post(t.client, { query: text, extensions: apq(hash) });
    expect(resent.status).toBe(200);
    expect(typeof resent.body.data?.serverTime).toBe('string');
    expect(Date.now() - started).toBeLessThan(2000);
    // What this instance registered or read before stays known to it.
    expect((await post(t.client, { extensions: apq(sha256(known)) })).status).toBe(200);
  });
});
