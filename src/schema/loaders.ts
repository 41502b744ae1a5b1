import DataLoader from 'dataloader';
import type { ReadVia } from '../db/read-routing.js';
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

  /** The request's reads may come from the read replica, for this viewer (read-your-writes). */
  private readonly via: ReadVia;

  constructor(
    private readonly s: Services,
    viewerId: string | null = null,
  ) {
    this.via = { viewerId };
  }

  get sale() {
    return (this.#sale ??= new DataLoader((ids: readonly string[]) => this.s.sales.readSales(ids, this.snapshotOf, this.via)));
  }
  get saleItem() {
    return (this.#saleItem ??= new DataLoader((ids: readonly string[]) => this.s.sales.itemsByIds(ids, this.via)));
  }
  get saleItemsOfSale() {
    return (this.#saleItemsOfSale ??= new DataLoader((ids: readonly string[]) => this.s.sales.readItemsOfSales(ids, this.snapshotOf, this.via)));
  }
  get product() {
    return (this.#product ??= new DataLoader((ids: readonly string[]) => this.s.catalog.productsByIds(ids, this.via)));
  }
  get order() {
    return (this.#order ??= new DataLoader((ids: readonly string[]) => this.s.orders.byIds(ids, this.via)));
  }
  /** One snapshot script call per sale per request: every item's figures agree, and the sale's cached rows are checked against it. */
  get snapshot() {
    return (this.#snapshot ??= new DataLoader((ids: readonly string[]) => Promise.all(ids.map((id) => this.s.sales.snapshot(id).catch((e: Error) => e)))));
  }

  private readonly snapshotOf = (saleId: string) => this.snapshot.load(saleId);
}

export function createLoaders(s: Services, viewerId: string | null = null): Loaders {
  return new Loaders(s, viewerId);
}
