import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, validate } from 'graphql';
import { request } from 'undici';
import { schema } from '../src/schema/index.js';
import { EXAMPLE_HEADERS, EXAMPLE_OPERATIONS } from '../src/server/graphiql-examples.js';
import { startTestServer, type TestServer } from './support/harness.js';

const browser = { accept: 'text/html' };

describe('GraphiQL examples', () => {
  it('are valid operations against the schema: Sales, Buy, Me and a subscription', () => {
    const document = parse(EXAMPLE_OPERATIONS);
    expect(validate(schema, document)).toEqual([]);
    const kinds = document.definitions.map((d) => ('operation' in d ? d.operation : d.kind));
    expect(kinds).toEqual(['query', 'mutation', 'query', 'subscription']);
    expect(document.definitions.map((d) => ('name' in d ? d.name?.value : null))).toEqual(['Sales', 'Buy', 'Me', 'WatchStock']);
    expect(JSON.parse(EXAMPLE_HEADERS)).toEqual({ Authorization: 'Bearer <run: npm run token -- alice>' });
  });

  describe('served', () => {
    let on: TestServer;
    let off: TestServer;
    beforeAll(async () => {
      [on, off] = await Promise.all([startTestServer('graphiql-on', { GRAPHIQL: 'true' }), startTestServer('graphiql-off', { GRAPHIQL: 'false' })]);
    });
    afterAll(() => Promise.all([on?.close(), off?.close()]));

    it('preloads the examples and the token hint when GraphiQL is on', async () => {
      const res = await request(`${on.app.url}/graphql`, { headers: browser });
      const html = await res.body.text();
      expect(res.statusCode).toBe(200);
      expect(html).toContain('mutation Buy');
      expect(html).toContain('query Me');
      expect(html).toContain('subscription WatchStock');
      expect(html).toContain('npm run token -- alice');
    });

    it('serves no page when GraphiQL is off', async () => {
      const res = await request(`${off.app.url}/graphql`, { headers: browser });
      const body = await res.body.text();
      expect(body).not.toContain('mutation Buy');
      expect(String(res.headers['content-type'] ?? '')).not.toMatch(/text\/html/);
    });
  });
});
