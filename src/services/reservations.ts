import type { Db } from '../db/database.js';
import { DbRouter, type ReadVia } from '../db/read-routing.js';
import type { Viewer } from './auth.js';
import { saleIdOf } from './ids.js';
import type { LiveReservation, StockEngine } from './stock/engine.js';

export type ReservationView = Omit<LiveReservation, 'status'> & { status: 'HELD' | 'CONFIRMED' | 'RELEASED' | 'EXPIRED' };

const HOUR = 3_600_000;

/** Reads reservations: live from Redis, else from their durable copy in PostgreSQL. */
export class ReservationReader {
  constructor(
    private readonly db: Db,
    private readonly engine: StockEngine,
    private readonly reads: DbRouter = DbRouter.primaryOnly(db),
  ) {}

  /** CONFIRMING is an internal step; clients see the hold as HELD until the order is committed. */
  static view(r: LiveReservation): ReservationView {
    return { ...r, status: r.status === 'CONFIRMING' ? 'HELD' : r.status };
  }

  async byId(id: string, via?: ReadVia): Promise<ReservationView | null> {
    const saleId = saleIdOf(id);
    if (!saleId) return null;
    const live = await this.engine.reservation(saleId, id);
    if (live) return ReservationReader.view(live);
    const db = await this.reads.db(via);
    const row = await db.selectFrom('reservations').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) return null;
    const order = row.status === 'CONFIRMED' ? await db.selectFrom('orders').select(['id', 'status']).where('reservation_id', '=', id).executeTakeFirst() : undefined;
    return {
      id: row.id, saleId: row.sale_id, saleItemId: row.sale_item_id, customerId: row.customer_id, quantity: row.quantity,
      status: row.status, createdAt: row.created_at.getTime(), expiresAt: row.expires_at.getTime(), endReason: row.end_reason,
      orderId: order?.id ?? null, idempotencyKey: row.idempotency_key, fromWaitlist: row.from_waitlist, cancelled: order?.status === 'CANCELLED',
    };
  }

  async visible(viewer: Viewer | null, id: string, via?: ReadVia): Promise<ReservationView | null> {
    if (!viewer) return null;
    const r = await this.byId(id, via);
    if (!r) return null;
    return viewer.role === 'admin' || r.customerId === viewer.id ? r : null;
  }

  /** HELD ones, plus those that ended in the last hour, newest first. */
  async ofCustomer(customerId: string, saleId: string | null): Promise<ReservationView[]> {
    const saleIds = saleId ? [saleId] : await this.engine.liveSaleIds();
    const since = Date.now() - HOUR;
    const found: ReservationView[] = [];
    for (const sid of saleIds) {
      const ids = await this.engine.customerReservationIds(sid, customerId);
      const live = await Promise.all(ids.map((id) => this.engine.reservation(sid, id)));
      for (const r of live) {
        if (!r) continue;
        const v = ReservationReader.view(r);
        if (v.status === 'HELD' || v.createdAt >= since || v.expiresAt >= since) found.push(v);
      }
    }
    return found.sort((a, b) => b.createdAt - a.createdAt);
  }
}
