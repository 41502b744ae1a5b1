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

  async products(args: { search?: string | null; first?: number | null; after?: string | null }, via?: ReadVia): Promise<Page<ProductRow>> {
    const db = await this.reads.db(via);
    const size = pageSize(args.first);
    const after = decodeCursor('product', args.after);
    const scope: CursorScope = { table: 'products' };
    let q = db.selectFrom('products').selectAll().orderBy('name').orderBy('id').limit(size + 1);
    if (args.search) {
      if (args.search.length > 200) throw badUserInput('search is at most 200 characters.', 'search');
      const pattern = `%${args.search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      q = q.where((eb) => eb.or([eb('name', 'ilike', pattern), eb('sku', 'ilike', pattern), eb('description', 'ilike', pattern)]));
    }
    // The cursor row need not match the search: it only marks a place in the (name, id) order.
    if (after) q = q.where(afterRow(scope, ['name', 'id'], after));
    const rows = await q.execute();
    if (after && rows.length === 0) await requireCursorRow(db, scope, after);
    return toPage(rows, size, 'product', (r) => r.id);
  }
}
