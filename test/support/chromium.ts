import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, ConsoleMessage, Page } from 'playwright-core';

// The browser tests (live page, storefront, GraphiQL, landing page) run in Debian's headless
// Chromium driven by playwright-core: never a downloaded browser, since this machine's network
// reaches only Debian's and npm's registries.

export const CHROMIUM = '/usr/bin/chromium';
export const SCREENSHOTS = join(process.cwd(), 'test-results');
// Without the background-networking flags Chromium keeps dialling Google's hosts, which a closed
// network refuses; the profile is a fresh empty directory per run.
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Installs what the browser tests need when it is missing; answers why they cannot run, or null. */
export function ensureBrowser(): string | null {
  if (!existsSync(CHROMIUM)) {
    if (process.getuid?.() !== 0) return `${CHROMIUM} is missing and installing it needs root (apt-get install chromium)`;
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const update = spawnSync('apt-get', ['update', '-qq'], { env, stdio: 'inherit', timeout: 300_000 });
    const install = spawnSync('apt-get', ['install', '-y', '-qq', 'chromium'], { env, stdio: 'inherit', timeout: 600_000 });
    if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing and apt-get could not install it (update exit ${update.status}, install exit ${install.status})`;
  }
  const require = createRequire(import.meta.url);
  try {
    require.resolve('playwright-core');
  } catch {
    // A devDependency, so only a partial install gets here; --no-save leaves package.json alone.
    const npm = spawnSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', 'playwright-core'], { stdio: 'inherit', timeout: 300_000 });
    try {
      require.resolve('playwright-core');
    } catch {
      return `playwright-core is not installed and npm could not install it (exit ${npm.status})`;
    }
  }
  return null;
}

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** A headless Chromium with a fresh profile; `close` ends it and deletes the profile. */
export async function launchChromium(label: string, viewport = { width: 1100, height: 900 }): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  const profileDir = mkdtempSync(join(tmpdir(), `${label}-chromium-`));
  const context = await chromium.launchPersistentContext(profileDir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport });
  mkdirSync(SCREENSHOTS, { recursive: true });
  return {
    context,
    close: async () => {
      await context.close().catch(() => undefined);
      rmSync(profileDir, { recursive: true, force: true });
    },
  };
}

/** A page that records script errors, failed loads and CSP refusals, so a test can insist there were none. */
export async function openPage(context: BrowserContext, url: string): Promise<{ page: Page; pageErrors: string[] }> {
  const page = await context.newPage();
  const pageErrors: string[] = [];
  const path = new URL(url).pathname;
  page.on('pageerror', (err) => pageErrors.push(`${path}: ${err.message}`));
  page.on('console', (msg: ConsoleMessage) => {
    if (msg.type() === 'error') pageErrors.push(`${path}: ${msg.text()} (${msg.location().url})`);
  });
  await page.goto(url);
  return { page, pageErrors };
}

/** Aborts every request the page makes to a host other than this machine: what "offline" looks like to it. */
export async function offline(target: BrowserContext | Page, blocked: string[] = []): Promise<void> {
  await target.route(() => true, (route) => {
    const url = new URL(route.request().url());
    const local = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname) || ['blob:', 'data:'].includes(url.protocol);
    if (local) return route.continue();
    blocked.push(url.href);
    return route.abort('internetdisconnected');
  });
}
