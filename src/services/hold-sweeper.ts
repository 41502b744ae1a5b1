import type { Logger } from 'pino';
import type { OrderStore } from './orders.js';
import type { SaleEvents } from './sale-events.js';
import type { StockEngine } from './stock/engine.js';

/**
 * Runs on every instance. Expires overdue holds of every live sale (the script is idempotent, so
 * several sweepers are harmless) and resolves CONFIRMING holds whose order commit outlived its
 * deadline: an order in PostgreSQL confirms the hold, no order releases it. A sale that ended
 * long enough ago and is idle is retired from the live set, so the work of every periodic task
 * follows the sales that can still change, not every sale ever run.
 */
export class HoldSweeper {
  constructor(
    private readonly engine: StockEngine,
    private readonly orders: OrderStore,
    private readonly events: SaleEvents,
    private readonly log: Logger,
    /** How long after its end an idle sale leaves the live set (see StockEngine.retire). */
    private readonly retireAfterMs: number,
  ) {}

  async sweepAll(): Promise<void> {
    for (const saleId of await this.engine.liveSaleIds()) await this.sweepSale(saleId);
  }

  async sweepSale(saleId: string): Promise<void> {
    const { ended, overdueConfirming, retirable } = await this.engine.expire(saleId, 1000, 5000, this.retireAfterMs);
    if (retirable && (await this.engine.retire(saleId, this.retireAfterMs))) {
      this.log.info({ saleId }, 'ended sale retired from the live set');
      return;
    }
    if (ended.length > 0) {
      this.log.debug({ saleId, count: ended.length }, 'holds expired');
      await this.events.holdsEnded(saleId, ended);
      await this.events.saleChanged(saleId);
    }
    if (overdueConfirming.length > 0) await this.resolveConfirming(saleId, overdueConfirming);
  }

  private async resolveConfirming(saleId: string, reservationIds: string[]): Promise<void> {
    const orders = await this.orders.byReservationIds(reservationIds);
    const byReservation = new Map(orders.map((o) => [o.reservation_id, o]));
    let confirmed = false;
    for (const id of reservationIds) {
      const order = byReservation.get(id);
      if (order) {
        await this.engine.confirm(saleId, id, order.id);
        // Cancelled while its hold was still confirming: the units go back now.
        if (order.status === 'CANCELLED') await this.engine.cancelOrder(saleId, id, order.id);
        confirmed = true;
        void this.events.reservationChanged(saleId, id, order.customer_id);
        this.log.info({ saleId, reservationId: id, orderId: order.id, status: order.status }, 'resolved an interrupted confirmation: confirmed');
      } else {
        const r = await this.engine.release(saleId, id, '', 'CONFIRM_FAILED', true);
        await this.events.holdsEnded(saleId, r.ended);
        this.log.info({ saleId, reservationId: id }, 'resolved an interrupted confirmation: released');
      }
    }
    // Reserved units became sold (a confirm interrupted by a Redis failover, say): stock
    // subscribers hear it like any other change, else their last state would stay stale.
    if (confirmed) {
      await this.events.stockChanged(saleId);
      await this.events.saleChanged(saleId);
    }
  }
}
