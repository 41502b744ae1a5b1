import DataLoader from 'dataloader';
import type { Services } from '../services/index.js';

/** Per-request batching and caching of list → item look-ups (no N+1 under a list of orders). */
export function createLoaders(s: Services) {
  /** One snapshot script call per sale per request: every item's figures agree, and the sale's cached rows are checked against it. */
  const snapshot = new DataLoader((ids: readonly string[]) => Promise.all(ids.map((id) => s.sales.snapshot(id).catch((e: Error) => e))));
  const snapshotOf = (saleId: string) => snapshot.load(saleId);
  return {
    sale: new DataLoader((ids: readonly string[]) => s.sales.readSales(ids, snapshotOf)),
    saleItem: new DataLoader((ids: readonly string[]) => s.sales.itemsByIds(ids)),
    saleItemsOfSale: new DataLoader((ids: readonly string[]) => s.sales.readItemsOfSales(ids, snapshotOf)),
    product: new DataLoader((ids: readonly string[]) => s.catalog.productsByIds(ids)),
    order: new DataLoader((ids: readonly string[]) => s.orders.byIds(ids)),
    snapshot,
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
