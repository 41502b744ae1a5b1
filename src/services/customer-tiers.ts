import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Db } from '../db/database.js';
import type { Viewer } from './auth.js';

export const CUSTOMER_TIERS = ['STANDARD', 'TRUSTED', 'RESTRICTED'] as const;
export type CustomerTier = (typeof CUSTOMER_TIERS)[number];

export function isCustomerTier(value: unknown): value is CustomerTier {
  return typeof value === 'string' && (CUSTOMER_TIERS as readonly string[]).includes(value);
}

/** Rows changed this long before the last look are read again: a write's `now()` is taken before it commits. */
const OVERLAP_MS = 10_000;
/** And the whole table is read again this often, whatever the overlap missed. */
const FULL_RELOAD_MS = 60_000;

/**
 * Every customer's tier: the one an admin set (`setCustomerTier`, stored in PostgreSQL's
 * `customer_tiers`), else the identity provider's `tier` claim, else STANDARD. An admin's choice
 * wins over the claim: it is the decision about this customer made here.
 *
 * The rate limiter asks on every buying call, so the answer comes from memory, never from
 * PostgreSQL: each instance holds the whole table (only customers an admin singled out have a
 * row; the many come from the claim or the default) and reloads the rows changed since its last
 * look every `refreshMs`. Not a per-customer TTL cache: a storm is thousands of customers' first
 * attempts, and each miss would have been a PostgreSQL query on the hot path. The instance that
 * writes a tier knows it at once; the others within `refreshMs`.
 */
export class CustomerTiers {
  private readonly stored = new Map<string, CustomerTier>();
  /** PostgreSQL's clock at the last look; null before the first. */
  private lastLook: Date | null = null;
  private lastFullLoad = 0;
  private timer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  /** This instance's writes made while a load is in flight: the load may have read the rows before them. */
  private writesDuringLoad: Map<string, CustomerTier> | null = null;

  constructor(private readonly db: Db, private readonly log: Logger, private readonly refreshMs = 1000) {}

  /** Loads the table, then keeps following it until `close`. */
  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => {
      this.refresh().catch((err: unknown) => this.log.warn({ err: String(err) }, 'reloading customer tiers failed; keeping the last ones'));
    }, this.refreshMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** The viewer's tier, from memory (no I/O). */
  tierOf(viewer: Pick<Viewer, 'id'> & { tier?: CustomerTier }): CustomerTier {
    return this.stored.get(viewer.id) ?? viewer.tier ?? 'STANDARD';
  }

  /** The tier an admin set for `customerId`, if any. */
  storedTier(customerId: string): CustomerTier | undefined {
    return this.stored.get(customerId);
  }

  /** Stores an admin's choice in PostgreSQL, then in this instance's memory. */
  async set(customerId: string, tier: CustomerTier, adminId: string): Promise<void> {
    await this.db
      .insertInto('customer_tiers')
      .values({ customer_id: customerId, tier, set_by: adminId, updated_at: sql<Date>`now()` })
      .onConflict((oc) => oc.column('customer_id').doUpdateSet({ tier, set_by: adminId, updated_at: sql<Date>`now()` }))
      .execute();
    this.stored.set(customerId, tier);
    this.writesDuringLoad?.set(customerId, tier);
  }

  /** Reads the rows changed since the last look (all of them at first, and every minute). */
  refresh(): Promise<void> {
    return (this.refreshing ??= this.load().finally(() => {
      this.refreshing = null;
    }));
  }

  private async load(): Promise<void> {
    const full = this.lastLook === null || Date.now() - this.lastFullLoad >= FULL_RELOAD_MS;
    const since = full ? new Date(0) : new Date(this.lastLook!.getTime() - OVERLAP_MS);
    const writes = (this.writesDuringLoad = new Map<string, CustomerTier>());
    try {
      // One statement: PostgreSQL's clock and the changed rows, read together (a row of nulls when none changed).
      const { rows } = await sql<{ at: Date; customer_id: string | null; tier: CustomerTier | null }>`
        select now() as at, t.customer_id, t.tier
        from (select 1) as one left join customer_tiers as t on t.updated_at > ${since}`.execute(this.db);
      if (full) this.stored.clear();
      for (const row of rows) if (row.customer_id !== null && row.tier !== null) this.stored.set(row.customer_id, row.tier);
      for (const [customerId, tier] of writes) this.stored.set(customerId, tier);
      this.lastLook = rows[0].at;
      if (full) this.lastFullLoad = Date.now();
    } finally {
      this.writesDuringLoad = null;
    }
  }
}
