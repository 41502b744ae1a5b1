import { sql, type RawBuilder } from 'kysely';
import { z } from 'zod';
import type { Db } from '../db/database.js';
import { DbRouter, type ReadVia } from '../db/read-routing.js';
import type { ProductRow } from '../db/types.js';
import { badUserInput } from './errors.js';
import { newId } from './ids.js';
import { afterRow, decodeCursor, pageSize, requireCursorRow, toPage, type CursorScope, type Page } from './pagination.js';
import { zodToBadInput } from './zod-errors.js';

const productInput = z.object({
  sku: z.string().trim().min(1).max(64),
  name: z.string().trim().min(1).max(200),
  description: z.string().max(5000).nullish(),
  priceCents: z.number().int().min(0).max(2_000_000_000),
  currency: z.string().regex(/^[A-Z]{3}$/, 'must be an ISO-4217 code such as "USD"'),
  imageUrl: z.string().url().max(2000).nullish(),
});
export type CreateProductInput = z.input<typeof productInput>;

export class CatalogService {
  constructor(
    private readonly db: Db,
    private readonly reads: DbRouter = DbRouter.primaryOnly(db),
  ) {}

  async createProduct(input: CreateProductInput): Promise<ProductRow> {
    const parsed = productInput.safeParse(input);
    if (!parsed.success) throw zodToBadInput(parsed.error, 'input');
    const p = parsed.data;
    const row = await this.db
      .insertInto('products')
      .values({ id: newId(), sku: p.sku, name: p.name, description: p.description ?? null, price_cents: p.priceCents, currency: p.currency, image_url: p.imageUrl ?? null })
      .onConflict((oc) => oc.column('sku').doNothing())
      .returningAll()
      .executeTakeFirst();
    if (!row) throw badUserInput(`A product with sku "${p.sku}" exists already.`, 'input.sku');
    return row;
  }

  async productsByIds(ids: readonly string[], via?: ReadVia): Promise<(ProductRow | null)[]> {
    if (ids.length === 0) return [];
    const db = await this.reads.db(via);
    const rows = await db.selectFrom('products').selectAll().where('id', 'in', [...ids]).execute();
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.map((id) => byId.get(id) ?? null);
  }

  async products(args: ProductListArgs, via?: ReadVia): Promise<Page<ProductRow>> {
    const db = await this.reads.db(via);
    const size = pageSize(args.first);
    const after = decodeCursor('product', args.after);
    const rows = await this.productsQuery(args, db).execute();
    if (after && rows.length === 0) await requireCursorRow(db, PRODUCTS, after);
    return toPage(rows, size, 'product', (r) => r.id);
  }

  /**
   * The one query `products` runs (exposed so a test can EXPLAIN exactly it). Without a search the
   * catalogue is listed by (name, id). A search keeps the products whose name, SKU or description
   * contains the text (case-insensitive; the trigram indexes of migration 0008 find them), best
   * match first: the closer the name or SKU is to the text as a whole (pg_trgm `similarity`), the
   * higher, so an exact name or SKU leads and a mention in the description alone comes last; equal
   * ranks by (name, id), which keeps the keyset cursor exact.
   */
  productsQuery(args: ProductListArgs, db: Db = this.db) {
    const size = pageSize(args.first);
    const after = decodeCursor('product', args.after);
    const q = db.selectFrom('products').selectAll().limit(size + 1);
    if (!args.search) {
      // The cursor row need not match anything: it only marks a place in the (name, id) order.
      const listed = q.orderBy('name').orderBy('id');
      return after ? listed.where(afterRow(PRODUCTS, ['name', 'id'], after)) : listed;
    }
    if (args.search.length > 200) throw badUserInput('search is at most 200 characters.', 'search');
    const search = args.search;
    const pattern = `%${search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    const ranked = q
      .where((eb) => eb.or([eb('name', 'ilike', pattern), eb('sku', 'ilike', pattern), eb('description', 'ilike', pattern)]))
      .orderBy(searchRank(search, sql.ref('products.name'), sql.ref('products.sku')), 'desc')
      .orderBy('name')
      .orderBy('id');
    return after ? ranked.where(rankedAfter(search, after)) : ranked;
  }
}

export interface ProductListArgs { search?: string | null; first?: number | null; after?: string | null }

const PRODUCTS: CursorScope = { table: 'products' };

function searchRank(search: string, name: RawBuilder<unknown>, sku: RawBuilder<unknown>): RawBuilder<number> {
  return sql<number>`greatest(similarity(${name}, ${search}), similarity(${sku}, ${search}))`;
}

/**
 * After the cursor row in (rank desc, name, id) order; the cursor row's rank is computed in the same
 * statement by the same expression, so equal ranks compare equal to the last bit. A cursor naming no
 * product compares as NULL: an empty page that `requireCursorRow` then tells apart from the end.
 */
function rankedAfter(search: string, id: string): RawBuilder<boolean> {
  const theirRank = sql`(select ${searchRank(search, sql.ref('c.name'), sql.ref('c.sku'))} from products as c where c.id = ${id})`;
  const mine = searchRank(search, sql.ref('products.name'), sql.ref('products.sku'));
  return sql<boolean>`(${mine} < ${theirRank} or (${mine} = ${theirRank} and ${afterRow(PRODUCTS, ['name', 'id'], id)}))`;
}
