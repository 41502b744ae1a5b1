import type { Db } from '../db/database.js';
import type { CatalogService } from './catalog.js';
import type { SalesService } from './sales.js';

/** A "1,000 phones" sale, ACTIVE now, so a newcomer can buy in GraphiQL at once. */
export async function seedSampleSale(db: Db, catalog: CatalogService, sales: SalesService): Promise<string | null> {
  const any = await db.selectFrom('sales').select('id').limit(1).executeTakeFirst();
  if (any) return null;
  const product =
    (await db.selectFrom('products').selectAll().where('sku', '=', 'PHONE-X1').executeTakeFirst()) ??
    (await catalog.createProduct({ sku: 'PHONE-X1', name: 'Phone X1 128 GB', description: 'The flagship phone, at a flash price.', priceCents: 49_999, currency: 'USD' }));
  const now = Date.now();
  const sale = await sales.scheduleSale({
    name: '1,000 phones',
    startsAt: new Date(now - 1000),
    endsAt: new Date(now + 7 * 24 * 3600 * 1000),
    perUserLimit: 2,
    holdSeconds: 120,
    waitingRoom: false,
    items: [{ productId: product.id, priceCents: 19_999, stock: 1000 }],
  });
  return sale.id;
}
