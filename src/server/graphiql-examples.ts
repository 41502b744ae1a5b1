import { renderGraphiQL as renderSelfHosted } from '@graphql-yoga/render-graphiql';
import type { GraphiQLOptions } from 'graphql-yoga';

/**
 * The document a first-time visitor finds in GraphiQL: the things one does with this API
 * (browse sales, buy, see one's orders, watch stock live). Each operation is named, so GraphiQL's run button offers
 * a choice; the variables editor shows what to paste where.
 */
export const EXAMPLE_OPERATIONS = /* GraphQL */ `# Flash-sale API: pick an operation with the run button.
# Buying needs a token: run \`npm run token -- alice\` and put it in the Headers tab.

query Sales {
  sales(first: 10) {
    edges {
      node {
        id
        name
        status
        startsAt
        endsAt
        available
        items { id priceCents available reserved sold product { name } }
      }
    }
  }
}

# Copy an item id from Sales into the variables: { "item": "<sale item id>" }
mutation Buy($item: ID!) {
  purchase(input: { saleItemId: $item, quantity: 1, idempotencyKey: "graphiql-first-try" }) {
    __typename
    ... on PurchaseSuccess { replayed order { id quantity totalCents status } }
    ... on Rejected { code message available retryAfterSeconds }
  }
}

# Who the token in the Headers tab is, with their orders (null without a token).
query Me {
  me { id tier orders(first: 5) { edges { node { id quantity totalCents status } } } }
}

# Live stock of one sale ({ "sale": "<sale id>" }): the current state first, then every change.
subscription WatchStock($sale: ID!) {
  stockChanged(saleId: $sale) { saleId status version items { saleItemId available reserved sold } }
}
`;

/** What the Headers tab starts with: where a token comes from, in the shape the server reads. */
export const EXAMPLE_HEADERS = JSON.stringify({ Authorization: 'Bearer <run: npm run token -- alice>' }, null, 2);

/** Yoga's `graphiql` option: the examples when GraphiQL is on, nothing at all when it is off. */
export function graphiqlOptions(enabled: boolean): GraphiQLOptions | false {
  if (!enabled) return false;
  return { title: 'Flash-sale API', defaultQuery: EXAMPLE_OPERATIONS, headers: EXAMPLE_HEADERS };
}

let rendered: { key: string; html: string } | null = null;

/**
 * GraphiQL 5 restores its saved tabs on a reload only when the `query`, `variables` and `headers`
 * it keeps beside them match one of the tabs; the query editor writes `query` only once edited, so
 * a reload before any edit opened a new, empty tab (Run: "Syntax Error: Unexpected <EOF>"). This
 * runs first and mirrors the active tab into those keys, so the reload reopens it.
 */
const RESTORE_ACTIVE_TAB = `<script>
try {
  const state = JSON.parse(localStorage.getItem('graphiql:tabState') || 'null');
  const tab = state && Array.isArray(state.tabs) ? state.tabs[state.activeTabIndex] : null;
  if (tab) for (const key of ['query', 'variables', 'headers']) {
    if (typeof tab[key] === 'string') localStorage.setItem('graphiql:' + key, tab[key]);
    else localStorage.removeItem('graphiql:' + key);
  }
} catch (e) { /* no storage: GraphiQL starts from the examples */ }
</script>`;

/**
 * Yoga's `renderGraphiQL`: the page with GraphiQL's scripts, styles and editor workers inlined
 * from node_modules (`@graphql-yoga/render-graphiql`), so it needs no CDN and works offline.
 * (Yoga's default page loads them from unpkg at a pinned `@graphql-yoga/graphiql` 4, whose wrapper
 * passed its welcome comment as the initial query, which wins over `defaultQuery`: the examples
 * never showed.) The page is ~9 MB, so it is built once per set of options, not per request.
 */
export function renderGraphiQL(options: GraphiQLOptions): string {
  const key = JSON.stringify(options);
  if (rendered?.key !== key) {
    const html = renderSelfHosted(options);
    const root = '<div id="root"></div>';
    if (!html.includes(root)) throw new Error('@graphql-yoga/render-graphiql: the page has no root element any more; see src/server/graphiql-examples.ts');
    rendered = { key, html: html.replace(root, `${root}\n${RESTORE_ACTIVE_TAB}`) };
  }
  return rendered.html;
}
