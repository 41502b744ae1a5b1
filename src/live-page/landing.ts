import type { CurrentSales, ListedSale } from './directory.js';

/**
 * The landing page (`/`) and the `/live` index: server-rendered HTML, no script. Everything that
 * comes from the database goes through `escape`, and the page policy (serve.ts) allows no script
 * at all, so a sale named like markup stays text.
 */

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const escape = (s: string) => s.replace(/[&<>"']/g, (c) => ESCAPES[c]);
const path = (id: string) => encodeURIComponent(id);

export interface LandingOptions {
  /** Whether `/graphql` serves GraphiQL to a browser (off in production unless GRAPHIQL=true). */
  graphiql: boolean;
  /** Served documents: [title, URL]. */
  docs: readonly (readonly [string, string])[];
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)}</title>
<link rel="stylesheet" href="/live/assets/style.css">
</head>
<body>
<main class="page landing">
${body}
</main>
</body>
</html>
`;
}

const when = (d: Date) => d.toISOString().replace('T', ' ').replace(/:\d\d\.\d{3}Z$/, ' UTC');

function saleRow(s: ListedSale, upcoming: boolean): string {
  const timing = upcoming ? `starts ${when(s.startsAt)}` : `${s.paused ? 'paused, ' : ''}ends ${when(s.endsAt)}`;
  return `<li data-sale-id="${escape(s.id)}"><span class="sale-name">${escape(s.name)}</span> <span class="muted">(${timing})</span>
  <a href="/live/${path(s.id)}">live page</a> · <a href="/live/${path(s.id)}/shop">shop</a></li>`;
}

function saleLists(sales: CurrentSales | null): string {
  if (!sales) return '<h2>On now</h2>\n<p id="live-sales" class="problem">The sales cannot be listed right now; try again in a moment.</p>';
  const live = sales.live.length
    ? `<ul id="live-sales">\n${sales.live.map((s) => saleRow(s, false)).join('\n')}\n</ul>`
    : '<p id="live-sales" class="muted">No sale is on right now.</p>';
  const upcoming = sales.upcoming.length
    ? `<h2>Coming up</h2>\n<ul id="upcoming-sales">\n${sales.upcoming.map((s) => saleRow(s, true)).join('\n')}\n</ul>`
    : '';
  return `<h2>On now</h2>\n${live}\n${upcoming}`;
}

export function renderLanding(sales: CurrentSales | null, opts: LandingOptions): string {
  const graphiql = opts.graphiql
    ? `<li><a id="graphiql-link" href="/graphql">GraphiQL</a>: browse sales, buy, watch stock; examples are preloaded. A token for its Headers tab: <code>npm run token -- alice</code>.</li>`
    : `<li>GraphQL endpoint: <code>/graphql</code> (POST, or graphql-ws on the same path; GraphiQL is off here).</li>`;
  const docs = opts.docs.length
    ? `<li>Docs: ${opts.docs.map(([title, href]) => `<a href="${escape(href)}">${escape(title)}</a>`).join(' · ')}</li>`
    : `<li>Docs: README.md and contract/CONTRACT.md in the repository.</li>`;
  return page('Flash-sale API', `<p class="eyebrow">Flash-sale API</p>
<h1>Flash-sale API</h1>
<ul class="links">
${graphiql}
<li><a href="/live">Live sales</a>: every sale on now, with its live page and shop.</li>
${docs}
</ul>
${saleLists(sales)}`);
}

export function renderLiveIndex(sales: CurrentSales | null): string {
  return page('Live sales', `<p class="eyebrow"><a href="/">Flash-sale API</a></p>
<h1>Live sales</h1>
${saleLists(sales)}`);
}

/** What the start log offers a browser: the landing page, GraphiQL, and the sample sale's pages. */
export function startUrls(base: string, opts: { graphiql: boolean; sampleSaleId: string | null }): { msg: string; urls: Record<string, string> } {
  const urls: Record<string, string> = { landing: `${base}/` };
  if (opts.graphiql) urls.graphiql = `${base}/graphql`;
  urls.liveSales = `${base}/live`;
  if (opts.sampleSaleId) {
    urls.livePage = `${base}/live/${path(opts.sampleSaleId)}`;
    urls.shop = `${base}/live/${path(opts.sampleSaleId)}/shop`;
  }
  const parts = [`open ${urls.landing}`];
  if (urls.graphiql) parts.push(`GraphiQL ${urls.graphiql}`);
  parts.push(urls.livePage ? `sample sale: live page ${urls.livePage} , shop ${urls.shop}` : `live sales ${urls.liveSales}`);
  return { msg: parts.join(' · '), urls };
}
