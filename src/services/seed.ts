import type { Db } from '../db/database.js';
import type { CatalogService } from './catalog.js';
import type { SalesService } from './sales.js';

const SAMPLE_SALE_NAME = '1,000 phones';

/**
 * A "1,000 phones" sale, ACTIVE now, so a newcomer can buy in GraphiQL at once: created in an
 * empty database only. Answers the sample sale (the newest one of that name that has not ended),
 * whether created now or at an earlier start, so every start can print its pages; null when the
 * database has other sales and no current sample.
 */
export async function seedSampleSale(db: Db, catalog: CatalogService, sales: SalesService): Promise<{ saleId: string; created: boolean } | null> {
  const any = await db.selectFrom('sales').select('id').limit(1).executeTakeFirst();
  if (any) {
    const sample = await db.selectFrom('sales').select('id')
      .where('name', '=', SAMPLE_SALE_NAME).where('ends_at', '>', new Date()).where('state', '!=', 'CANCELLED')
      .orderBy('created_at', 'desc').limit(1).executeTakeFirst();
    return sample ? { saleId: sample.id, created: false } : null;
  }
  const product =
    (await db.selectFrom('products').selectAll().where('sku', '=', 'PHONE-X1').executeTakeFirst()) ??
    (await catalog.createProduct({ sku: 'PHONE-X1', name: 'Phone X1 128 GB', description: 'The flagship phone, at a flash price.', priceCents: 49_999, currency: 'USD' }));
  const now = Date.now();
  const sale = await sales.scheduleSale({
    name: SAMPLE_SALE_NAME,
    startsAt: new Date(now - 1000),
    endsAt: new Date(now + 7 * 24 * 3600 * 1000),
    perUserLimit: 2,
    holdSeconds: 120,
    waitingRoom: false,
    items: [{ productId: product.id, priceCents: 19_999, stock: 1000 }],
  });
  return { saleId: sale.id, created: true };
}
