import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/harness.js';
import { PURCHASE } from './support/operations.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer('errlog', { RATE_LIMIT_ENABLED: 'false' }, { captureLogs: 'info' });
});
afterAll(() => t?.close());

describe('error logging', () => {
  it('logs no error for expected outcomes: missing token, bad input, unknown field, wrong variable type', async () => {
    const before = t.logs.length;
    const answers = await Promise.all([
      t.client.gql(PURCHASE, { input: { saleItemId: 'x.y', idempotencyKey: 'k' } }),
      t.client.gql(`{ sale(id: "${'z'.repeat(65)}") { id } }`),
      t.client.gql(`{ nope }`),
      t.client.gql(PURCHASE, { input: { saleItemId: 'x.y', idempotencyKey: 'k', quantity: 'many' } }),
    ]);
    expect(answers.map((a) => a.errors?.[0]?.extensions?.code)).toEqual(['UNAUTHENTICATED', 'BAD_USER_INPUT', 'GRAPHQL_VALIDATION_FAILED', 'BAD_USER_INPUT']);
    await new Promise((r) => setTimeout(r, 100));
    expect(t.logs.slice(before).filter((l) => l.level >= 50)).toEqual([]);
  });

  it('still logs an unexpected failure, and masks it for the client', async () => {
    const before = t.logs.length;
    // A database that went away under a query the catalogue has no answer for: a genuine fault.
    await t.app.db.destroy();
    const r = await t.client.gql(`{ products { edges { node { id } } } }`);
    expect(r.errors?.[0]).toMatchObject({ message: 'Unexpected error.', extensions: { code: 'INTERNAL_SERVER_ERROR' } });
    expect(r.body).not.toMatch(/pool|stack|\.ts:\d+/i);
    expect(t.logs.slice(before).some((l) => l.level >= 50)).toBe(true);
  });
});
