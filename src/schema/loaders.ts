import DataLoader from 'dataloader';
import type { SaleItemRow, SaleRow } from '../db/types.js';
import type { Services } from '../services/index.js';

type Snapshot = Awaited<ReturnType<Services['sales']['snapshot']>>;

/**
 * Per-request batching and caching of list → item look-ups (no N+1 under a list of orders).
 * Each loader is made on first use: most requests (a purchase, a stock read) need one or two of
 * the six, and a storm makes thousands of contexts a second.
 */
export class Loaders {
  #sale?: DataLoader<string, SaleRow | null>;
  #saleItem?: DataLoader<string, SaleItemRow | null>;
  #saleItemsOfSale?: DataLoader<string, SaleItemRow[]>;
  #product?: DataLoader<string, Awaited<ReturnType<Services['catalog']['productsByIds']>>[number]>;
  #order?: DataLoader<string, Awaited<ReturnType<Services['orders']['byIds']>>[number]>;
  #snapshot?: DataLoader<string, Snapshot | Error>;

  constructor(private readonly s: Services) {}

  get sale() {
    return (this.#sale ??= new DataLoader((ids: readonly string[]) => this.s.sales.readSales(ids, this.snapshotOf)));
  }
  get saleItem() {
    return (this.#saleItem ??= new DataLoader((ids: readonly string[]) => this.s.sales.itemsByIds(ids)));
  }
  get saleItemsOfSale() {
    return (this.#saleItemsOfSale ??= new DataLoader((ids: readonly string[]) => this.s.sales.readItemsOfSales(ids, this.snapshotOf)));
  }
  get product() {
    return (this.#product ??= new DataLoader((ids: readonly string[]) => this.s.catalog.productsByIds(ids)));
  }
  get order() {
    return (this.#order ??= new DataLoader((ids: readonly string[]) => this.s.orders.byIds(ids)));
  }
  /** One snapshot script call per sale per request: every item's figures agree, and the sale's cached rows are checked against it. */
  get snapshot() {
    return (this.#snapshot ??= new DataLoader((ids: readonly string[]) => Promise.all(ids.map((id) => this.s.sales.snapshot(id).catch((e: Error) => e)))));
  }

  private readonly snapshotOf = (saleId: string) => this.snapshot.load(saleId);
}

export function createLoaders(s: Services): Loaders {
  return new Loaders(s);
}
