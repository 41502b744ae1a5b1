import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SaleDirectory } from './directory.js';
import { renderLanding, renderLiveIndex } from './landing.js';

/**
 * The landing page (`/`), the index of live sales (`/live`), the live sale page (`/live/<saleId>`)
 * and the storefront example (`/live/<saleId>/shop`), and the docs when the checkout has them
 * (`/docs/...`). The sale pages are static files read once at start, no build step. Both pages are plain clients of the public API (HTTP
 * POST and graphql-ws at `/graphql`), so they hold no server-side state and reveal nothing that
 * an anonymous GraphQL client could not read.
 */

interface StaticFile {
  body: Buffer;
  type: string;
  etag: string;
}

const here = dirname(fileURLToPath(import.meta.url));

function load(path: string, type: string): StaticFile {
  const body = readFileSync(path);
  return { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` };
}

// The UMD build defines `window.graphqlWs`; the package's export map does not expose it, so it is
// found beside the package's resolved entry. Read at import: a missing dependency fails the start.
const graphqlWsDir = join(dirname(createRequire(import.meta.url).resolve('graphql-ws')), '..');

const assets: ReadonlyMap<string, StaticFile> = new Map([
  ['graphql-ws.js', load(join(graphqlWsDir, 'umd', 'graphql-ws.min.js'), 'text/javascript; charset=utf-8')],
  ['api.js', load(join(here, 'api.js'), 'text/javascript; charset=utf-8')],
  ['live.js', load(join(here, 'live.js'), 'text/javascript; charset=utf-8')],
  ['shop.js', load(join(here, 'shop.js'), 'text/javascript; charset=utf-8')],
  ['style.css', load(join(here, 'style.css'), 'text/css; charset=utf-8')],
]);
const livePage = load(join(here, 'live.html'), 'text/html; charset=utf-8');
const shopPage = load(join(here, 'shop.html'), 'text/html; charset=utf-8');

/** Ids are opaque strings of at most 64 characters; anything outside URL-safe characters names no sale of ours. */
const SALE_PATH = /^\/live\/([A-Za-z0-9._~-]{1,64})(\/shop)?\/?$/;

/**
 * Only our own files and our own origin: the pages render server data with textContent, and this
 * policy is the second line should a future edit forget that. Style changes made from script
 * (element.style) are not governed by style-src, so no inline styles are needed.
 */
const PAGE_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'";

/**
 * The README and the contract, from the checkout beside `src/` or `dist/`; a production image
 * (only `dist/`) has neither, and its landing page then names them instead of linking.
 */
const root = join(here, '..', '..');
const docs: ReadonlyMap<string, StaticFile & { title: string }> = new Map(
  ([['README.md', 'README', join(root, 'README.md')], ['CONTRACT.md', 'API contract', join(root, 'contract', 'CONTRACT.md')]] as const)
    .filter(([, , file]) => existsSync(file))
    .map(([name, title, file]) => [name, { ...load(file, 'text/plain; charset=utf-8'), title }]),
);

export interface PagesOptions {
  directory: SaleDirectory;
  /** Whether `/graphql` serves GraphiQL, so the landing page links it. */
  graphiql: boolean;
}

/** Every path the pages answer: `/`, `/live...`, `/docs/...`; the rest is GraphQL's. */
export function isPagePath(path: string | undefined): path is string {
  return path === '/' || path === '/live' || (path?.startsWith('/live/') ?? false) || (path?.startsWith('/docs/') ?? false);
}

/** Answers a request for which `isPagePath` holds: a page, an asset, a document, or 404/405. */
export async function servePage(req: IncomingMessage, res: ServerResponse, path: string, opts: PagesOptions): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('Method not allowed\n');
    return;
  }
  if (path === '/' || path === '/live' || path === '/live/') {
    // A database that does not answer leaves the links to GraphiQL and the docs standing.
    const sales = await opts.directory.current().catch(() => null);
    const html = path === '/'
      ? renderLanding(sales, { graphiql: opts.graphiql, docs: [...docs].map(([name, doc]) => [doc.title, `/docs/${name}`] as const) })
      : renderLiveIndex(sales);
    const body = Buffer.from(html);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-cache', 'content-security-policy': policyFor(res), 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  let file: StaticFile | undefined;
  if (path.startsWith('/docs/')) {
    file = docs.get(path.slice('/docs/'.length));
  } else if (path.startsWith('/live/assets/')) {
    file = assets.get(path.slice('/live/assets/'.length));
  } else {
    const m = SALE_PATH.exec(path);
    if (m) file = m[2] ? shopPage : livePage;
  }
  if (!file) {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not found\n');
    return;
  }
  const headers = {
    'content-type': file.type,
    // No fingerprinted names without a build step, so browsers revalidate every time (a 304 is tiny).
    'cache-control': 'no-cache',
    etag: file.etag,
    'content-security-policy': policyFor(res),
  };
  if (req.headers['if-none-match'] === file.etag) {
    res.writeHead(304, headers).end();
    return;
  }
  res.writeHead(200, { ...headers, 'content-length': file.body.length });
  res.end(req.method === 'HEAD' ? undefined : file.body);
}

/** Keeps the deployment's frame-ancestors (set by the hardening headers) and adds the page's own rules. */
function policyFor(res: ServerResponse): string {
  const existing = res.getHeader('content-security-policy');
  return typeof existing === 'string' && existing ? `${existing}; ${PAGE_POLICY}` : PAGE_POLICY;
}
