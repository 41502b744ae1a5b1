import { CREATE_PRODUCT, SCHEDULE_SALE } from './operations.js';
import type { TestServer } from './harness.js';

let sku = 0;

/** Creates a product and schedules a sale of it through the public API, as an admin would. */
export async function createSale(
  t: TestServer,
  opts: { stock?: number; items?: number; startsInMs?: number; endsInMs?: number; perUserLimit?: number; holdSeconds?: number; waitingRoom?: boolean; admitPerSecond?: number } = {},
): Promise<{ saleId: string; itemIds: string[] }> {
  const items = [];
  for (let i = 0; i < (opts.items ?? 1); i++) {
    const p = await t.client.gql(CREATE_PRODUCT, { input: { sku: `SKU-${process.pid}-${Date.now()}-${sku++}`, name: `Phone ${sku}`, priceCents: 50_000, currency: 'USD' } }, t.admin);
    if (!p.data?.createProduct) throw new Error(`createProduct failed: ${p.body}`);
    items.push({ productId: p.data.createProduct.id, priceCents: 19_999, stock: opts.stock ?? 10 });
  }
  const now = Date.now();
  const input = {
    name: 'Test sale',
    startsAt: new Date(now + (opts.startsInMs ?? -1000)).toISOString(),
    endsAt: new Date(now + (opts.endsInMs ?? 3600_000)).toISOString(),
    perUserLimit: opts.perUserLimit ?? 2,
    holdSeconds: opts.holdSeconds ?? 120,
    waitingRoom: opts.waitingRoom ?? false,
    admitPerSecond: opts.admitPerSecond,
    items,
  };
  const s = await t.client.gql(SCHEDULE_SALE, { input }, t.admin);
  if (!s.data?.scheduleSale) throw new Error(`scheduleSale failed: ${s.body}`);
  return { saleId: s.data.scheduleSale.id, itemIds: s.data.scheduleSale.items.map((i: { id: string }) => i.id) };
}
