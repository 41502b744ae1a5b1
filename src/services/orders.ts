import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import type { OrderRow } from '../db/types.js';
import type { Viewer } from './auth.js';
import { decodeCursor, pageSize, toPage, type Page } from './pagination.js';

export interface NewOrderRow {
  id: string;
  saleId: string;
  saleItemId: string;
  reservationId: string;
  customerId: string;
  quantity: number;
  unitPriceCents: number;
  idempotencyKey: string | null;
  deliveryEnc: string | null;
  /** The order must be committed before this instant (PostgreSQL's clock) or not at all. */
  deadline: Date;
}

export type InsertOutcome = { ok: true; order: OrderRow } | { ok: false; reason: 'DEADLINE_PASSED' } | { ok: false; reason: 'KEY_TAKEN'; existing: OrderRow };

/** Orders in PostgreSQL: the durable truth of what was sold. */
export class OrderStore {
  constructor(private readonly db: Db) {}

  /**
   * Inserts an order unless its hold's confirmation deadline has passed. Past the deadline the
   * service may already have released the hold, so committing then could sell a unit twice.
   */
  async insert(o: NewOrderRow): Promise<InsertOutcome> {
    try {
      const result = await sql<OrderRow>`
        insert into orders (id, sale_id, sale_item_id, reservation_id, customer_id, quantity, unit_price_cents,
          total_cents, status, payment_method, idempotency_key, delivery_enc)
        select ${o.id}, ${o.saleId}, ${o.saleItemId}, ${o.reservationId}, ${o.customerId}, ${o.quantity},
          ${o.unitPriceCents}, ${o.unitPriceCents * o.quantity}, 'CONFIRMED', 'CASH_ON_DELIVERY', ${o.idempotencyKey}, ${o.deliveryEnc}
        where clock_timestamp() < ${o.deadline}
        returning *`.execute(this.db);
      const order = result.rows[0];
      return order ? { ok: true, order } : { ok: false, reason: 'DEADLINE_PASSED' };
    } catch (err) {
      const e = err as { code?: string; constraint?: string };
      if (e.code === '23505' && e.constraint === 'orders_customer_idempotency' && o.idempotencyKey) {
        const existing = await this.byCustomerKey(o.customerId, o.idempotencyKey);
        if (existing) return { ok: false, reason: 'KEY_TAKEN', existing };
      }
      throw err;
    }
  }

  async byCustomerKey(customerId: string, key: string): Promise<OrderRow | undefined> {
    return this.db.selectFrom('orders').selectAll().where('customer_id', '=', customerId).where('idempotency_key', '=', key).executeTakeFirst();
  }

  async byIds(ids: readonly string[]): Promise<(OrderRow | null)[]> {
    if (ids.length === 0) return [];
    const rows = await this.db.selectFrom('orders').selectAll().where('id', 'in', [...ids]).execute();
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.map((id) => byId.get(id) ?? null);
  }

  async byReservationIds(ids: readonly string[]): Promise<OrderRow[]> {
    if (ids.length === 0) return [];
    return this.db.selectFrom('orders').selectAll().where('reservation_id', 'in', [...ids]).execute();
  }

  /** Marks a CONFIRMED order CANCELLED; undefined when it was not CONFIRMED. */
  async cancel(orderId: string): Promise<OrderRow | undefined> {
    return this.db
      .updateTable('orders')
      .set({ status: 'CANCELLED', cancelled_at: new Date() })
      .where('id', '=', orderId)
      .where('status', '=', 'CONFIRMED')
      .returningAll()
      .executeTakeFirst();
  }

  /** An order the viewer may see: their own, or any for admins. */
  async visible(viewer: Viewer | null, orderId: string): Promise<OrderRow | null> {
    if (!viewer) return null;
    const [order] = await this.byIds([orderId]);
    if (!order) return null;
    return viewer.role === 'admin' || order.customer_id === viewer.id ? order : null;
  }

  /** The customer's orders, newest first. */
  async ofCustomer(customerId: string, args: { saleId?: string | null; first?: number | null; after?: string | null }): Promise<Page<OrderRow>> {
    const size = pageSize(args.first);
    const after = decodeCursor(args.after);
    let q = this.db.selectFrom('orders').selectAll().where('customer_id', '=', customerId).orderBy('created_at', 'desc').orderBy('id', 'desc').limit(size + 1);
    if (args.saleId) q = q.where('sale_id', '=', args.saleId);
    if (after) q = q.where(sql<boolean>`(created_at, id) < (${new Date(Number(after[0]))}, ${after[1]})`);
    return toPage(await q.execute(), size, (r) => [r.created_at.getTime(), r.id]);
  }

  /** A sale's orders for fulfilment, oldest first. */
  async ofSale(saleId: string, args: { status?: OrderRow['status'] | null; first?: number | null; after?: string | null }): Promise<Page<OrderRow>> {
    const size = pageSize(args.first);
    const after = decodeCursor(args.after);
    let q = this.db.selectFrom('orders').selectAll().where('sale_id', '=', saleId).orderBy('created_at').orderBy('id').limit(size + 1);
    if (args.status) q = q.where('status', '=', args.status);
    if (after) q = q.where(sql<boolean>`(created_at, id) > (${new Date(Number(after[0]))}, ${after[1]})`);
    return toPage(await q.execute(), size, (r) => [r.created_at.getTime(), r.id]);
  }
}
