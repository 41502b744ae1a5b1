import { LRUCache } from 'lru-cache';
import type { SaleItemRow, SaleRow } from '../db/types.js';

/** One sale's rows as of one revision; each part is filled by the first read that needs it. */
interface CachedSale {
  revision: string;
  sale?: SaleRow;
  items?: SaleItemRow[];
}

/**
 * This process' copy of sale and sale-item rows, for reads, keyed by sale and tagged with the
 * revision of the sale's rows that Redis held when they were read (`SaleSnapshot.revision`).
 *
 * Invariant: rows are remembered under a revision read from Redis *before* the rows were read from
 * PostgreSQL, and every change of the rows commits in PostgreSQL *before* a fresh, never reused
 * revision is written to Redis. So rows found under the revision a reader has just read are no
 * older than that read: a change whose admin call has returned (on any instance) has written its
 * revision, and the reader misses and reads PostgreSQL again. A stale tag only costs a miss.
 *
 * Bounded: least recently read sales go first, and an entry lives at most `ttlMs`, which bounds
 * changes made around the service (SQL by hand, a crash between the commit and the Redis write).
 */
export class SaleRowsCache {
  private readonly entries: LRUCache<string, CachedSale>;

  constructor(opts: { maxSales?: number; ttlMs?: number } = {}) {
    this.entries = new LRUCache({ max: opts.maxSales ?? 1000, ttl: opts.ttlMs ?? 30_000 });
  }

  sale(saleId: string, revision: string): SaleRow | undefined {
    return this.current(saleId, revision)?.sale;
  }

  items(saleId: string, revision: string): SaleItemRow[] | undefined {
    return this.current(saleId, revision)?.items;
  }

  rememberSale(sale: SaleRow, revision: string): void {
    this.entryFor(sale.id, revision).sale = sale;
  }

  rememberItems(saleId: string, items: SaleItemRow[], revision: string): void {
    this.entryFor(saleId, revision).items = items;
  }

  get size(): number {
    return this.entries.size;
  }

  private current(saleId: string, revision: string): CachedSale | undefined {
    const entry = this.entries.get(saleId);
    return entry?.revision === revision ? entry : undefined;
  }

  /** The entry of this revision; rows of any other revision are dropped (tokens are unordered). */
  private entryFor(saleId: string, revision: string): CachedSale {
    const entry = this.entries.get(saleId);
    if (entry?.revision === revision) return entry;
    const fresh: CachedSale = { revision };
    this.entries.set(saleId, fresh);
    return fresh;
  }
}
