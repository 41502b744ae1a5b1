import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type App } from '../src/app.js';
import { deleteRedisPrefix, dropDatabase, GqlClient, isolation, testConfig } from './support/harness.js';
import { PURCHASE } from './support/operations.js';

const lines: { level: number; msg?: string }[] = [];
let app: App;
let client: GqlClient;
const iso = isolation('errlog');
beforeAll(async () => {
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  app = await startApp(testConfig(iso, { RATE_LIMIT_ENABLED: 'false' }), { log: pino({ level: 'info' }, sink) });
  client = new GqlClient(app.url, 8);
});
afterAll(async () => {
  await client?.close();
  await app?.stop();
  await dropDatabase(iso.databaseUrl);
  await deleteRedisPrefix(iso.redisPrefix);
});

describe('error logging', () => {
  it('logs no error for expected outcomes: missing token, bad input, unknown field, wrong variable type', async () => {
    const before = lines.length;
    const answers = await Promise.all([
      client.gql(PURCHASE, { input: { saleItemId: 'x.y', idempotencyKey: 'k' } }),
      client.gql(`{ sale(id: "${'z'.repeat(65)}") { id } }`),
      client.gql(`{ nope }`),
      client.gql(PURCHASE, { input: { saleItemId: 'x.y', idempotencyKey: 'k', quantity: 'many' } }),
    ]);
    expect(answers.map((a) => a.errors?.[0]?.extensions?.code)).toEqual(['UNAUTHENTICATED', 'BAD_USER_INPUT', 'GRAPHQL_VALIDATION_FAILED', 'BAD_USER_INPUT']);
    await new Promise((r) => setTimeout(r, 100));
    expect(lines.slice(before).filter((l) => l.level >= 50)).toEqual([]);
  });

  it('still logs an unexpected failure, and masks it for the client', async () => {
    const before = lines.length;
    // A database that went away under a query the catalogue has no answer for: a genuine fault.
    await app.db.destroy();
    const r = await client.gql(`{ products { edges { node { id } } } }`);
    expect(r.errors?.[0]).toMatchObject({ message: 'Unexpected error.', extensions: { code: 'INTERNAL_SERVER_ERROR' } });
    expect(r.body).not.toMatch(/pool|stack|\.ts:\d+/i);
    expect(lines.slice(before).some((l) => l.level >= 50)).toBe(true);
  });
});
