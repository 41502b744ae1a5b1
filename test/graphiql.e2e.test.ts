import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBrowser, launchChromium, offline, openPage, SCREENSHOTS, type Browser } from './support/chromium.js';
import { createSale } from './support/fixtures.js';
import { startTestServer, type TestServer } from './support/harness.js';

// GraphiQL as a newcomer meets it: rendered by Debian's headless Chromium with every host but this
// machine unreachable, so a page that needs a CDN shows nothing here.

const browserProblem = ensureBrowser();
if (browserProblem) console.warn(`SKIPPING the GraphiQL browser tests: ${browserProblem}`);

let t: TestServer;
let browser: Browser;
/** Requests the pages made to anywhere but this machine (aborted). */
const blocked: string[] = [];

beforeAll(async () => {
  if (browserProblem) return;
  t = await startTestServer('graphiql-browser', { GRAPHIQL: 'true' });
  browser = await launchChromium('graphiql');
  await offline(browser.context, blocked);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await t?.close();
});

/** The active tab's query and headers as GraphiQL keeps them (the editors show only what fits). */
async function activeTab(page: Page): Promise<{ query: string; headers: string | null; operationName: string | null }> {
  const state = await page.evaluate(() => localStorage.getItem('graphiql:tabState'));
  const parsed = JSON.parse(state ?? '{"tabs":[],"activeTabIndex":0}');
  return parsed.tabs[parsed.activeTabIndex] ?? { query: '', headers: null, operationName: null };
}

const shown = (s: string) => s.replace(/\u00a0/g, ' ');

describe.skipIf(browserProblem !== null)('GraphiQL in headless Chromium, offline', () => {
  it('renders from this server alone, opens with the example operations and the token hint, and runs Sales', async () => {
    await createSale(t, { stock: 7 });
    const { page, pageErrors } = await openPage(browser.context, `${t.app.url}/graphql`);

    const query = page.locator('.graphiql-query-editor');
    await expect.poll(() => query.isVisible(), { timeout: 30_000 }).toBe(true);
    await expect.poll(() => query.innerText().then(shown), { timeout: 20_000 }).toContain('query Sales');
    expect(shown(await query.innerText())).not.toContain('Welcome to GraphiQL');
    expect(shown(await query.innerText())).toContain('npm run token -- alice');
    // The whole document: Sales, Buy, a subscription; and where a token comes from in the headers.
    await expect.poll(() => activeTab(page).then((tab) => tab.query)).toContain('subscription WatchStock');
    const tab = await activeTab(page);
    expect(tab.query).toContain('mutation Buy');
    expect(tab.query).toContain('query Me');
    expect(JSON.parse(tab.headers ?? '{}')).toEqual({ Authorization: 'Bearer <run: npm run token -- alice>' });
    await page.getByText('Headers', { exact: true }).click();
    await expect.poll(() => page.locator('.graphiql-editor-tool').innerText().then(shown)).toContain('Bearer <run: npm run token -- alice>');

    // Run (Ctrl+Enter in the editor runs the operation under the cursor: Sales, near the top).
    await page.getByText('query Sales', { exact: false }).first().click();
    await page.keyboard.press('Control+Enter');
    const result = page.locator('.graphiql-response');
    await expect.poll(() => result.innerText().then(shown), { timeout: 15_000 }).toContain('"sales"');
    const answer = shown(await result.innerText());
    expect(answer).toContain('"edges"');
    expect(answer).toContain('"status": "ACTIVE"');
    expect(answer).not.toMatch(/Syntax Error|"errors"/);

    await page.screenshot({ path: join(SCREENSHOTS, 'graphiql.png') });

    // A reload reopens the same tab (GraphiQL 5 alone opened a new, empty one: "Unexpected <EOF>").
    await page.reload();
    await expect.poll(() => query.isVisible(), { timeout: 30_000 }).toBe(true);
    await expect.poll(() => query.innerText().then(shown), { timeout: 20_000 }).toContain('query Sales');
    const tabs = await page.evaluate(() => JSON.parse(localStorage.getItem('graphiql:tabState') ?? '{}').tabs?.length);
    expect(tabs).toBe(1);
    expect(blocked).toEqual([]);
    expect(pageErrors).toEqual([]);
    await page.close();
  }, 90_000);

  it('the landing page renders, lists a current sale with its pages, and its GraphiQL link opens GraphiQL', async () => {
    const { saleId } = await createSale(t, { stock: 3 });
    const { page, pageErrors } = await openPage(browser.context, `${t.app.url}/`);
    expect(await page.locator('h1').textContent()).toBe('Flash-sale API');
    const row = page.locator(`#live-sales li[data-sale-id="${saleId}"]`);
    await expect.poll(() => row.count(), { timeout: 5000 }).toBe(1);
    expect(await row.locator('a').evaluateAll((as) => as.map((a) => (a as HTMLAnchorElement).pathname))).toEqual([`/live/${saleId}`, `/live/${saleId}/shop`]);
    await page.screenshot({ path: join(SCREENSHOTS, 'landing-page.png'), fullPage: true });

    await page.locator('#graphiql-link').click();
    await page.waitForURL(`${t.app.url}/graphql`);
    const query = page.locator('.graphiql-query-editor');
    await expect.poll(() => query.isVisible(), { timeout: 30_000 }).toBe(true);
    await expect.poll(() => query.innerText().then(shown), { timeout: 20_000 }).toContain('query Sales');
    expect(blocked).toEqual([]);
    expect(pageErrors).toEqual([]);
    await page.close();
  }, 90_000);
});
