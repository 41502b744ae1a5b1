import { check } from 'k6';
import { CREATE_PRODUCT, SALE_LEVELS, SCHEDULE_SALE } from '../../harness/operations.ts';
import { gql } from './graphql.ts';
import { signToken } from './jwt.ts';

export interface SaleRef {
  saleId: string;
  itemId: string;
  stock: number;
}

/** setup(): an ACTIVE one-item sale made through the API as an admin, or the one named by SALE_ID/SALE_ITEM_ID. */
export function createSale(name: string, stock: number, perUserLimit: number): SaleRef {
  if (__ENV.SALE_ID && __ENV.SALE_ITEM_ID) return { saleId: __ENV.SALE_ID, itemId: __ENV.SALE_ITEM_ID, stock };
  const admin = signToken('k6-admin', 'admin');
  const p = gql(CREATE_PRODUCT, { input: { sku: `K6-${Date.now()}-${Math.floor(Math.random() * 1e9)}`, name, priceCents: 50_000, currency: 'USD' } }, { token: admin, name: 'setup' });
  const productId = p.body.data?.createProduct?.id;
  if (!productId) throw new Error(`createProduct failed: ${p.res.body}`);
  const now = Date.now();
  const s = gql(SCHEDULE_SALE, {
    input: {
      name, startsAt: new Date(now - 1000).toISOString(), endsAt: new Date(now + 6 * 3600_000).toISOString(), perUserLimit, holdSeconds: 300,
      items: [{ productId, priceCents: 19_999, stock }],
    },
  }, { token: admin, name: 'setup' });
  const sale = s.body.data?.scheduleSale;
  if (!sale) throw new Error(`scheduleSale failed: ${s.res.body}`);
  return { saleId: sale.id, itemId: sale.items[0].id, stock };
}

/**
 * teardown(): what k6 can check without PostgreSQL (the Node harness audits PostgreSQL too):
 * available + reserved + sold = stock, nothing oversold. Failed checks fail the `checks` threshold.
 */
export function checkStockAdds(sale: SaleRef, expectSoldOut: boolean): void {
  const { body } = gql(SALE_LEVELS, { id: sale.saleId }, { name: 'audit' });
  const item = body.data?.sale?.items?.find((i: { id: string }) => i.id === sale.itemId);
  check(item, {
    'audit: available + reserved + sold = stock': (i) => !!i && i.available + i.reserved + i.sold === i.initialStock,
    'audit: no oversell': (i) => !!i && i.sold <= sale.stock && i.available >= 0,
    'audit: every unit sold': (i) => !expectSoldOut || (!!i && i.sold === sale.stock),
  });
}
