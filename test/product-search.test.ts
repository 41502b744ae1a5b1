import { CompiledQuery, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type GqlResult, type TestServer } from './support/harness.js';

// Issue 20 (6): `products(search:)` on a catalogue of 100,000 products is answered through the
// trigram indexes of migration 0008 (EXPLAIN of the very query the service runs), best match first,
// with the same API: substring matches in name, SKU or description, keyset pages that stay exact.

const CATALOGUE = 100_000;
const PRODUCTS = `query($search: String, $first: Int, $after: String) {
  products(search: $search, first: $first, after: $after) { edges { cursor node { sku name } } pageInfo { hasNextPage endCursor } } }`;

/** Products that mention "zephyr", best match first (pg_trgm similarity of name or SKU: 1, .78, .39, .23, 0). */
const NEEDLES = [
  { sku: 'NEEDLE-1', name: 'Zephyr', description: null },
  { sku: 'ZEPHYR-3', name: 'Wireless charger', description: null },
  { sku: 'NEEDLE-2', name: 'Zephyr headphones', description: null },
  { sku: 'NEEDLE-4', name: 'Zephyrine floor lamp, large', description: null },
  { sku: 'NEEDLE-5', name: 'Walnut bookshelf', description: 'Ships with a zephyr-blue cover.' },
];

let t: TestServer;
let customer: string;

interface PlanNode { 'Node Type': string; 'Relation Name'?: string; 'Index Name'?: string; Plans?: PlanNode[] }

function planNodes(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(planNodes)];
}

/** The plan PostgreSQL picks for the query `products(args)` runs, with its real parameters. */
async function planOf(args: { search?: string; first?: number; after?: string }): Promise<PlanNode[]> {
  const query = t.app.services.catalog.productsQuery(args).compile();
  const { rows } = await t.app.db.executeQuery<{ 'QUERY PLAN': { Plan: PlanNode }[] }>(
    CompiledQuery.raw(`explain (format json) ${query.sql}`, [...query.parameters]),
  );
  return planNodes(rows[0]['QUERY PLAN'][0].Plan);
}

const scansOfProducts = (nodes: PlanNode[]) => nodes.filter((n) => n['Relation Name'] === 'products' || n['Index Name']?.startsWith('products'));

beforeAll(async () => {
  t = await startTestServer('product-search');
  customer = await t.token('searcher');
  // Bulk loading as one would: the indexes are dropped and rebuilt from their own definitions
  // (those of migration 0008 among them), which takes half the time of 100,000 single inserts
  // into three trigram indexes. Words come from small vocabularies, so no generated product
  // mentions a needle's text.
  const searchIndexes = ['products_description_trgm', 'products_name_id', 'products_name_trgm', 'products_sku_trgm'];
  const { rows: indexes } = await sql<{ name: string; definition: string }>`
    select indexname as name, indexdef as definition from pg_indexes
    where tablename = 'products' and indexname = any(${searchIndexes}) order by indexname`.execute(t.app.db);
  expect(indexes.map((i) => i.name)).toEqual(searchIndexes);
  for (const i of indexes) await sql`drop index ${sql.id(i.name)}`.execute(t.app.db);
  await sql`
    insert into products (id, sku, name, description, price_cents, currency)
    select 'gen-' || i, 'GEN-' || i,
      (array['Red','Blue','Green','Black','Silver','Golden','Matte'])[1 + i % 7] || ' ' ||
      (array['phone','lamp','chair','kettle','speaker','backpack','watch','desk','camera','blender','jacket'])[1 + (i / 7) % 11] || ' ' || i,
      case when i % 3 = 0 then 'A sturdy everyday item, model ' || i end,
      100 + i % 5000, 'USD'
    from generate_series(1, ${CATALOGUE}) as i`.execute(t.app.db);
  for (const i of indexes) await sql.raw(i.definition).execute(t.app.db);
  for (const n of NEEDLES) {
    const r = await t.client.gql(
      `mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }`,
      { input: { ...n, priceCents: 999, currency: 'USD' } }, t.admin,
    );
    expect(r.errors, r.body).toBeUndefined();
  }
  await sql`analyze products`.execute(t.app.db);
}, 60_000);

afterAll(async () => {
  await t?.close();
});

describe('products(search:) on 100,000 products', () => {
  it('is answered through the trigram indexes, never by reading the whole table', async () => {
    for (const args of [{ search: 'zephyr' }, { search: 'ZEPHYR-3', first: 5 }, { search: 'headphones' }]) {
      const scans = scansOfProducts(await planOf(args));
      const indexes = scans.map((n) => n['Index Name']).filter(Boolean);
      expect(indexes, JSON.stringify(args)).toEqual(expect.arrayContaining(['products_name_trgm', 'products_sku_trgm', 'products_description_trgm']));
      expect(scans.filter((n) => n['Node Type'] === 'Seq Scan'), JSON.stringify(args)).toEqual([]);
    }
  });

  it('the next page after a cursor too', async () => {
    const first = await t.client.gql(PRODUCTS, { search: 'zephyr', first: 2 }, customer);
    const scans = scansOfProducts(await planOf({ search: 'zephyr', first: 2, after: first.data.products.pageInfo.endCursor }));
    expect(scans.filter((n) => n['Node Type'] === 'Seq Scan')).toEqual([]);
    expect(scans.map((n) => n['Index Name'])).toContain('products_name_trgm');
  });

  it('the unsearched catalogue is read in (name, id) order from its index', async () => {
    const scans = scansOfProducts(await planOf({ first: 20 }));
    expect(scans.map((n) => n['Index Name'])).toContain('products_name_id');
    expect(scans.filter((n) => n['Node Type'] === 'Seq Scan')).toEqual([]);
  });

  it('answers every product that contains the text, best match first', async () => {
    const r = await t.client.gql(PRODUCTS, { search: 'zephyr', first: 20 }, customer);
    expect(r.errors, r.body).toBeUndefined();
    expect(r.data.products.edges.map((e: { node: { sku: string } }) => e.node.sku)).toEqual(NEEDLES.map((n) => n.sku));
    expect(r.data.products.pageInfo.hasNextPage).toBe(false);
  });

  it('pages through the ranked results exactly, a cursor at a time', async () => {
    const seen: string[] = [];
    let after: string | null = null;
    for (let page = 0; page < 10; page++) {
      const r: GqlResult = await t.client.gql(PRODUCTS, { search: 'zephyr', first: 2, after }, customer);
      expect(r.errors, r.body).toBeUndefined();
      seen.push(...r.data.products.edges.map((e: { node: { sku: string } }) => e.node.sku));
      if (!r.data.products.pageInfo.hasNextPage) break;
      after = r.data.products.pageInfo.endCursor;
    }
    expect(seen).toEqual(NEEDLES.map((n) => n.sku));
  });

  it('matches a substring anywhere, not only whole words, and escapes LIKE wildcards', async () => {
    const inside = await t.client.gql(PRODUCTS, { search: 'phyrin', first: 5 }, customer);
    expect(inside.data.products.edges.map((e: { node: { sku: string } }) => e.node.sku)).toEqual(['NEEDLE-4']);
    const wildcard = await t.client.gql(PRODUCTS, { search: 'zep%yr', first: 5 }, customer);
    expect(wildcard.data.products.edges).toEqual([]);
    const many = await t.client.gql(PRODUCTS, { search: 'golden kettle', first: 3 }, customer);
    expect(many.data.products.edges).toHaveLength(3);
    expect(many.data.products.pageInfo.hasNextPage).toBe(true);
  });
});
