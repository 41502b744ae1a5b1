import { randomBytes } from 'node:crypto';
import type { GraphqlClient } from './graphql-client.js';
import { CREATE_PRODUCT, SCHEDULE_SALE } from './operations.js';

export interface BenchSale {
  saleId: string;
  itemId: string;
  stock: number;
  perUserLimit: number;
}

/** Creates a product and an ACTIVE one-item sale through the public API, as an admin would. */
export async function createBenchSale(client: GraphqlClient, admin: string, o: { name: string; stock: number; perUserLimit: number }): Promise<BenchSale> {
  const sku = `BENCH-${randomBytes(6).toString('hex')}`;
  const p = await client.must(CREATE_PRODUCT, { input: { sku, name: `${o.name} phone`, priceCents: 50_000, currency: 'USD' } }, admin);
  const now = Date.now();
  const s = await client.must(SCHEDULE_SALE, {
    input: {
      name: o.name,
      startsAt: new Date(now - 1000).toISOString(),
      endsAt: new Date(now + 6 * 3600_000).toISOString(),
      perUserLimit: o.perUserLimit,
      holdSeconds: 300,
      items: [{ productId: p.createProduct.id, priceCents: 19_999, stock: o.stock }],
    },
  }, admin);
  return { saleId: s.scheduleSale.id, itemId: s.scheduleSale.items[0].id, stock: o.stock, perUserLimit: o.perUserLimit };
}
