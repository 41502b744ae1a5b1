import type { Logger } from 'pino';
import type { OrderRow } from '../../db/types.js';
import type { OrderStore } from '../orders.js';
import type { ReservationReader, ReservationView } from '../reservations.js';
import type { SaleEvent } from '../sale-events.js';
import type { ChannelHub } from './channel-hub.js';

export type ViewerChange =
  | { kind: 'reservation'; reservation: ReservationView }
  | { kind: 'order'; order: OrderRow }
  /** `targeted`: the customer's own entry changed; otherwise positions moved on the item. */
  | { kind: 'waitlist'; saleId: string; saleItemId: string; targeted: boolean };
export type ViewerListener = (change: ViewerChange) => void;

/**
 * Routes reservation and order events to the customers connected to this instance. Viewer
 * streams are not tied to one sale (orderChanged has no saleId), so the instance listens to every
 * sale's channel through one pattern subscription, held only while a viewer stream is open, and
 * reads each changed reservation or order once however many of the customer's streams are open.
 * After the pub/sub connection returns, each connected customer's reservations and latest order
 * are read again and delivered, since their events may have been lost meanwhile.
 */
export class ViewerFeed {
  private readonly byCustomer = new Map<string, Set<ViewerListener>>();
  /** Reads for one customer run one after another, so a slow read never delivers an older state last. */
  private readonly chains = new Map<string, Promise<void>>();
  private unlisten: Promise<() => void> | null = null;

  constructor(
    private readonly hub: ChannelHub,
    private readonly pattern: string,
    private readonly reservations: ReservationReader,
    private readonly orders: OrderStore,
    private readonly log: Logger,
  ) {
    hub.onResync(() => {
      for (const customerId of this.byCustomer.keys()) this.chain(customerId, () => this.resync(customerId));
    });
  }

  /** Resolves once the pattern subscription is confirmed, so the caller can read the current state safely. */
  async join(customerId: string, listener: ViewerListener): Promise<() => void> {
    let set = this.byCustomer.get(customerId);
    if (!set) this.byCustomer.set(customerId, (set = new Set()));
    set.add(listener);
    const leave = () => {
      const current = this.byCustomer.get(customerId);
      if (!current?.delete(listener)) return;
      if (current.size === 0) this.byCustomer.delete(customerId);
      if (this.byCustomer.size === 0 && this.unlisten) {
        const unlisten = this.unlisten;
        this.unlisten = null;
        void unlisten.then((off) => off(), () => undefined);
      }
    };
    this.unlisten ??= this.hub.listenPattern(this.pattern, (e) => this.enqueue(e));
    try {
      await this.unlisten;
    } catch (err) {
      this.unlisten = null;
      leave();
      throw err;
    }
    return leave;
  }

  private enqueue(event: SaleEvent): void {
    if (event.type === 'waitlist') {
      // Entries are read by the waitlist stream itself (throttled for position moves).
      const targets = event.customerId === null ? [...this.byCustomer.keys()] : this.byCustomer.has(event.customerId) ? [event.customerId] : [];
      const change = { kind: 'waitlist' as const, saleId: event.saleId, saleItemId: event.saleItemId, targeted: event.customerId !== null };
      for (const customerId of targets) for (const listener of this.byCustomer.get(customerId) ?? []) listener(change);
      return;
    }
    if (event.type !== 'reservation' && event.type !== 'order') return;
    if (!this.byCustomer.has(event.customerId)) return;
    this.chain(event.customerId, () => this.deliver(event));
  }

  private chain(customerId: string, task: () => Promise<void>): void {
    const next = (this.chains.get(customerId) ?? Promise.resolve()).then(task);
    this.chains.set(customerId, next);
    void next.then(() => {
      if (this.chains.get(customerId) === next) this.chains.delete(customerId);
    });
  }

  private async resync(customerId: string): Promise<void> {
    if (!this.byCustomer.has(customerId)) return;
    try {
      const [reservations, orders] = await Promise.all([this.reservations.ofCustomer(customerId, null), this.orders.ofCustomer(customerId, { first: 1 })]);
      const changes: ViewerChange[] = [
        ...reservations.reverse().map((reservation) => ({ kind: 'reservation' as const, reservation })),
        ...orders.nodes.map((order) => ({ kind: 'order' as const, order })),
      ];
      for (const listener of this.byCustomer.get(customerId) ?? []) for (const change of changes) listener(change);
    } catch (err) {
      this.log.warn({ err: String(err) }, 'viewer resync failed');
    }
  }

  private async deliver(event: Extract<SaleEvent, { type: 'reservation' | 'order' }>): Promise<void> {
    if (!this.byCustomer.has(event.customerId)) return;
    try {
      let change: ViewerChange | null = null;
      if (event.type === 'reservation') {
        const reservation = await this.reservations.byId(event.reservationId);
        if (reservation && reservation.customerId === event.customerId) change = { kind: 'reservation', reservation };
      } else {
        const [order] = await this.orders.byIds([event.orderId]);
        if (order && order.customer_id === event.customerId) change = { kind: 'order', order };
      }
      if (!change) return;
      for (const listener of this.byCustomer.get(event.customerId) ?? []) listener(change);
    } catch (err) {
      this.log.warn({ err: String(err), type: event.type }, 'viewer event read failed');
    }
  }
}
