import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp } from '../src/app.js';
import { renderLanding } from '../src/live-page/landing.js';
import { createSale } from './support/fixtures.js';
import { deleteRedisPrefix, dropDatabase, isolation, startTestServer, testConfig, type TestServer } from './support/harness.js';
import { CREATE_PRODUCT, SCHEDULE_SALE } from './support/operations.js';

// The landing page (`/`), the index of live sales (`/live`) and the URLs the start log offers.

const get = async (url: string, init?: RequestInit) => {
  const res = await fetch(url, init);
  return { status: res.status, type: res.headers.get('content-type') ?? '', csp: res.headers.get('content-security-policy') ?? '', body: await res.text() };
};

describe('landing page and /live index', () => {
  let t: TestServer;
  let live: { saleId: string };
  let upcoming: { saleId: string };
  let cancelled: { saleId: string };
  let hostileId: string;
  const hostile = `Sale <script>window.pwned=1</script> & "co"`;

  beforeAll(async () => {
    t = await startTestServer('landing', { GRAPHIQL: 'true' });
    live = await createSale(t, { stock: 3 });
    upcoming = await createSale(t, { startsInMs: 3600_000, endsInMs: 7200_000 });
    cancelled = await createSale(t, { stock: 3 });
    const c = await t.client.gql(`mutation($id: ID!) { cancelSale(id: $id) { id } }`, { id: cancelled.saleId }, t.admin);
    expect(c.data?.cancelSale.id).toBe(cancelled.saleId);
    const product = await t.client.gql(CREATE_PRODUCT, { input: { sku: `LAND-${Date.now()}`, name: 'Phone', priceCents: 100, currency: 'USD' } }, t.admin);
    const now = Date.now();
    const s = await t.client.gql(SCHEDULE_SALE, {
      input: {
        name: hostile, startsAt: new Date(now - 1000).toISOString(), endsAt: new Date(now + 3600_000).toISOString(),
        perUserLimit: 1, holdSeconds: 60, items: [{ productId: product.data.createProduct.id, priceCents: 100, stock: 1 }],
      },
    }, t.admin);
    hostileId = s.data.scheduleSale.id;
  });
  afterAll(() => t?.close());

  it('/ links GraphiQL, the live sales, the docs, and the live page and shop of each current sale', async () => {
    const page = await get(`${t.app.url}/`);
    expect(page.status).toBe(200);
    expect(page.type).toMatch(/^text\/html/);
    expect(page.csp).toContain("default-src 'none'");
    expect(page.body).toContain('href="/graphql"');
    expect(page.body).toContain('href="/live"');
    expect(page.body).toContain('href="/docs/README.md"');
    expect(page.body).toContain('href="/docs/CONTRACT.md"');
    expect(page.body).toContain(`href="/live/${live.saleId}"`);
    expect(page.body).toContain(`href="/live/${live.saleId}/shop"`);
    // Upcoming sales are listed as such; a cancelled one is not listed at all.
    expect(page.body).toMatch(new RegExp(`id="upcoming-sales">[^]*href="/live/${upcoming.saleId.replace(/[.]/g, '\\.')}"`));
    expect(page.body).not.toContain(cancelled.saleId);
    // A name is text, never markup.
    expect(page.body).toContain(`href="/live/${hostileId}"`);
    expect(page.body).not.toContain('<script>');
    expect(page.body).toContain('Sale &lt;script&gt;window.pwned=1&lt;/script&gt; &amp; &quot;co&quot;');

    const readme = await get(`${t.app.url}/docs/README.md`);
    expect(readme.status).toBe(200);
    expect(readme.body).toMatch(/^# Flash-sale API/);
    expect((await get(`${t.app.url}/docs/nothing.md`)).status).toBe(404);
    expect((await get(`${t.app.url}/`, { method: 'POST' })).status).toBe(405);
  });

  it('/live lists the live sales with links instead of answering "Not found"', async () => {
    const page = await get(`${t.app.url}/live`);
    expect(page.status).toBe(200);
    expect(page.type).toMatch(/^text\/html/);
    expect(page.body).not.toContain('Not found');
    expect(page.body).toMatch(new RegExp(`id="live-sales">[^]*href="/live/${live.saleId.replace(/[.]/g, '\\.')}/shop"`));
    expect(page.body).toContain('href="/"');
    expect(page.body).not.toContain(cancelled.saleId);
  });

  it('a sale created after a page view appears within the listing cache (2 s)', async () => {
    await get(`${t.app.url}/live`);
    const fresh = await createSale(t, { stock: 1 });
    await expect.poll(async () => (await get(`${t.app.url}/live`)).body, { timeout: 5000, interval: 250 }).toContain(`href="/live/${fresh.saleId}"`);
  });

  it('without GraphiQL the landing page names the endpoint instead of linking a page that is not there', () => {
    const html = renderLanding({ live: [], upcoming: [] }, { graphiql: false, docs: [] });
    expect(html).not.toContain('href="/graphql"');
    expect(html).toContain('<code>/graphql</code>');
    expect(html).toContain('No sale is on right now.');
  });
});

describe('start log', () => {
  it('prints the landing page, GraphiQL and the sample sale\'s live page and shop on every start, not only the first', async () => {
    const iso = isolation('landing-log');
    const config = testConfig(iso, { SEED_SAMPLE_SALE: 'true', GRAPHIQL: 'true' });
    const start = async () => {
      const lines: Record<string, any>[] = [];
      const sink = new Writable({ write(chunk, _e, done) { for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l)); done(); } });
      const app = await startApp(config, { log: pino({ level: 'info' }, sink), workers: false });
      await app.stop();
      return { lines, url: app.url };
    };
    try {
      const first = await start();
      const seeded = first.lines.find((l) => l.msg === 'sample sale "1,000 phones" is ACTIVE')!;
      expect(seeded?.saleId).toBeTruthy();
      const second = await start();
      expect(second.lines.some((l) => l.msg === 'sample sale "1,000 phones" is ACTIVE')).toBe(false);
      for (const { lines, url } of [first, second]) {
        const open = lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('open '));
        expect(open).toMatchObject({
          landing: `${url}/`, graphiql: `${url}/graphql`,
          livePage: `${url}/live/${seeded.saleId}`, shop: `${url}/live/${seeded.saleId}/shop`,
        });
        expect(open?.msg).toContain(`${url}/live/${seeded.saleId}/shop`);
      }
    } finally {
      await dropDatabase(iso.databaseUrl);
      await deleteRedisPrefix(iso.redisPrefix);
    }
  });
});
