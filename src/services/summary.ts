import type { Db } from '../db/database.js';
import { DbRouter, type ReadVia } from '../db/read-routing.js';
import type { SaleRow } from '../db/types.js';
import type { StockEngine } from './stock/engine.js';
import type { ErrorCode } from './errors.js';
import type { WaitlistService } from './waitlist.js';

export interface SaleSummary {
  sale: SaleRow;
  unitsSold: number;
  orders: number;
  uniqueBuyers: number;
  revenueCents: bigint;
  attempts: bigint;
  rejections: { code: ErrorCode; count: number }[];
  reservationsExpired: number;
  waitlistSize: number;
  soldOutAt: Date | null;
  sellOutSeconds: number | null;
}

/** An admin's view of how a sale went: orders from PostgreSQL, attempts and rejections from Redis. */
export class SummaryService {
  constructor(
    private readonly db: Db,
    private readonly engine: StockEngine,
    private readonly waitlist: WaitlistService,
    private readonly reads: DbRouter = DbRouter.primaryOnly(db),
  ) {}

  /** Orders are counted on the replica with `via` (an admin report), so they may be a little behind the live counters. */
  async summary(sale: SaleRow, via?: ReadVia): Promise<SaleSummary> {
    const db = await this.reads.db(via);
    const [agg, counters, snap, waitlistSize] = await Promise.all([
      db
        .selectFrom('orders')
        .where('sale_id', '=', sale.id)
        .where('status', '=', 'CONFIRMED')
        .select((eb) => [
          eb.fn.coalesce(eb.fn.sum<number>('quantity'), eb.lit(0)).as('units'),
          eb.fn.countAll<number>().as('orders'),
          eb.fn.count<number>('customer_id').distinct().as('buyers'),
          eb.fn.coalesce(eb.fn.sum<number>('total_cents'), eb.lit(0)).as('revenue'),
        ])
        .executeTakeFirstOrThrow(),
      this.engine.counters(sale.id),
      this.engine.snapshot(sale.id),
      this.waitlist.size(sale.id),
    ]);
    const byCode = new Map<ErrorCode, number>();
    for (const [k, v] of counters) {
      if (!k.startsWith('rej:')) continue;
      // The engine's own codes are finer than the public ones.
      const raw = k.slice(4);
      const code = (raw === 'INVALID_QUANTITY' ? 'INVALID_INPUT' : raw === 'NO_SALE' ? 'TEMPORARILY_UNAVAILABLE' : raw) as ErrorCode;
      byCode.set(code, (byCode.get(code) ?? 0) + v);
    }
    const rejections = [...byCode].map(([code, count]) => ({ code, count }));
    rejections.sort((a, b) => b.count - a.count || a.code.localeCompare(b.code));
    const soldOutAt = snap?.soldOutAt != null ? new Date(snap.soldOutAt) : sale.sold_out_at;
    return {
      sale,
      unitsSold: Number(agg.units),
      orders: Number(agg.orders),
      uniqueBuyers: Number(agg.buyers),
      revenueCents: BigInt(agg.revenue),
      attempts: BigInt(counters.get('attempts') ?? 0),
      rejections,
      reservationsExpired: counters.get('expired') ?? 0,
      waitlistSize,
      soldOutAt,
      sellOutSeconds: soldOutAt ? (soldOutAt.getTime() - sale.starts_at.getTime()) / 1000 : null,
    };
  }
}
