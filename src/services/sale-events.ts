import type { Logger } from 'pino';
import type { RedisClient } from '../redis.js';
import type { EndedHold } from './stock/engine.js';

/** What a sale's channel carries between instances; subscribers read state, not deltas. */
export type SaleEvent =
  | { type: 'stock'; saleId: string }
  | { type: 'sale'; saleId: string }
  | { type: 'reservation'; saleId: string; reservationId: string; customerId: string }
  | { type: 'order'; saleId: string; orderId: string; customerId: string }
  | { type: 'waitlist'; saleId: string; saleItemId: string; customerId: string | null };

/**
 * Publishes small events on the sale's Redis pub/sub channel, so every instance hears them.
 * Events name what changed; receivers read the current state, so a lost or late event never
 * shows a wrong state, and bursts coalesce: the events of one event-loop turn leave as one message
 * per sale (a JSON array when there are several), each distinct event once. At a sale's opening a
 * turn holds dozens of purchases with three events each; one PUBLISH instead of a hundred saves
 * this process, Redis and every receiving instance the work.
 */
export class SaleEvents {
  private readonly publishing: ((saleId: string) => void)[] = [];
  /** This turn's events by sale, each distinct text once, in the order first published. */
  private pending = new Map<string, Set<string>>();
  private flushed: Promise<void> | null = null;

  constructor(
    private readonly publisher: RedisClient,
    private readonly prefix: string,
    private readonly log: Logger,
  ) {}

  /**
   * Calls `listener` with the sale of each event this instance publishes, synchronously, before
   * the event leaves for Redis: the response cache drops the sale's answers then, so the caller's
   * own next read never meets an answer from before its change.
   */
  onPublish(listener: (saleId: string) => void): void {
    this.publishing.push(listener);
  }

  channel(saleId: string): string {
    return `${this.prefix}events:{sale:${saleId}}`;
  }

  /** Resolves once the event has left for Redis (or failed to: events are hints, never errors). */
  private publish(event: SaleEvent): Promise<void> {
    for (const listener of this.publishing) listener(event.saleId);
    let texts = this.pending.get(event.saleId);
    if (!texts) this.pending.set(event.saleId, (texts = new Set()));
    texts.add(JSON.stringify(event));
    // After this turn's I/O callbacks, so every request answered in the same turn joins.
    return (this.flushed ??= new Promise<void>((resolve) => setImmediate(() => resolve(this.flush()))));
  }

  private async flush(): Promise<void> {
    const batches = this.pending;
    this.pending = new Map();
    this.flushed = null;
    await Promise.all(
      [...batches].map(async ([saleId, texts]) => {
        const message = texts.size === 1 ? [...texts][0] : `[${[...texts].join(',')}]`;
        try {
          await this.publisher.publish(this.channel(saleId), message);
        } catch (err) {
          // The next event (or a snapshot) carries the state. Never fail a sale for one.
          this.log.warn({ err, saleId, events: texts.size }, 'event publish failed');
        }
      }),
    );
  }

  stockChanged(saleId: string) {
    return this.publish({ type: 'stock', saleId });
  }
  saleChanged(saleId: string) {
    return this.publish({ type: 'sale', saleId });
  }
  reservationChanged(saleId: string, reservationId: string, customerId: string) {
    return this.publish({ type: 'reservation', saleId, reservationId, customerId });
  }
  orderChanged(saleId: string, orderId: string, customerId: string) {
    return this.publish({ type: 'order', saleId, orderId, customerId });
  }
  /** A customer's entry changed (customerId), or positions moved for everyone on the item (null). */
  waitlistChanged(saleId: string, saleItemId: string, customerId: string | null) {
    return this.publish({ type: 'waitlist', saleId, saleItemId, customerId });
  }
  /** Holds a script ended, and waitlist offers it made (whose entries changed, and positions behind them). */
  async holdsEnded(saleId: string, ended: EndedHold[]): Promise<void> {
    if (ended.length === 0) return;
    await Promise.all(ended.filter((e) => e.reservationId !== '').map((e) => this.reservationChanged(saleId, e.reservationId, e.customerId)));
    // Offers made, and entries whose offer ended (LAPSED, LEFT) or that lapsed unserved: their customers hear at once.
    const entries = ended.filter((e) => e.fromWaitlist);
    await Promise.all(entries.map((e) => this.waitlistChanged(saleId, e.saleItemId, e.customerId)));
    await Promise.all([...new Set(entries.map((e) => e.saleItemId))].map((item) => this.waitlistChanged(saleId, item, null)));
    await this.stockChanged(saleId);
  }
}
