import type { Db } from '../db/database.js';

/** A sale as the landing page and the `/live` index list it. */
export interface ListedSale {
  id: string;
  name: string;
  startsAt: Date;
  endsAt: Date;
  paused: boolean;
}

export interface CurrentSales {
  /** Started and not ended (the live page tells whether one is sold out). */
  live: ListedSale[];
  /** Starting later, soonest first. */
  upcoming: ListedSale[];
}

/**
 * The sales the landing page links to: not ended and not cancelled, soonest first, at most
 * `limit`. One small read of PostgreSQL (no Redis, no stock), shared by every page view
 * for `ttlMs`, so a crowd on `/` costs the database one query every two seconds per instance.
 */
export class SaleDirectory {
  private cached: { at: number; value: Promise<CurrentSales> } | null = null;

  constructor(private readonly db: Db, private readonly limit = 20, private readonly ttlMs = 2000) {}

  current(): Promise<CurrentSales> {
    const now = Date.now();
    if (!this.cached || now - this.cached.at >= this.ttlMs) {
      const value = this.read(now);
      this.cached = { at: now, value };
      // A failed read is not kept: the next view tries again.
      value.catch(() => {
        if (this.cached?.value === value) this.cached = null;
      });
    }
    return this.cached.value;
  }

  private async read(now: number): Promise<CurrentSales> {
    const rows = await this.db.selectFrom('sales')
      .select(['id', 'name', 'starts_at', 'ends_at', 'state'])
      .where('ends_at', '>', new Date(now))
      .where('state', '!=', 'CANCELLED')
      .orderBy('starts_at', 'asc').orderBy('id', 'asc')
      .limit(this.limit)
      .execute();
    const sales = rows.map((r) => ({ id: r.id, name: r.name, startsAt: r.starts_at, endsAt: r.ends_at, paused: r.state === 'PAUSED' }));
    return { live: sales.filter((s) => s.startsAt.getTime() <= now), upcoming: sales.filter((s) => s.startsAt.getTime() > now) };
  }
}
