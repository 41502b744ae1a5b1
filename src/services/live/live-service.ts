import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { OrderRow } from '../../db/types.js';
import type { RedisClient } from '../../redis.js';
import type { Viewer } from '../auth.js';
import type { OrderStore } from '../orders.js';
import type { ReservationReader, ReservationView } from '../reservations.js';
import type { SaleEvents } from '../sale-events.js';
import type { SalesService } from '../sales.js';
import type { StockEngine } from '../stock/engine.js';
import type { QueueTicketView, WaitingRoomService } from '../waiting-room.js';
import type { WaitlistEntryView, WaitlistService } from '../waitlist.js';
import { ChannelHub } from './channel-hub.js';
import { LiveStream } from './live-stream.js';
import { SaleFeeds, type FeedListener, type FeedMembership, type FeedState } from './sale-feed.js';
import { SaleStatusWatch } from './sale-status-watch.js';
import { ViewerFeed } from './viewer-feed.js';

export type LiveField = 'stockChanged' | 'saleStatusChanged' | 'reservationChanged' | 'orderChanged' | 'waitlistChanged' | 'queueChanged';

export interface LiveDeps {
  engine: StockEngine;
  sales: SalesService;
  reservations: ReservationReader;
  orders: OrderStore;
  waitlist: WaitlistService;
  waitingRoom: WaitingRoomService;
  events: SaleEvents;
  /** The instance's dedicated pub/sub connection; opened on the first subscription. */
  createSubscriber: (connectionName: string) => RedisClient;
  /** For the transition claims (SET NX). */
  redis: RedisClient;
  prefix: string;
  registry: Registry;
  log: Logger;
  /** Minimum gap between two reads (and so two events) of one sale on this instance. */
  stockIntervalMs?: number;
}

/** Redis glob characters in the prefix must match literally. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

/**
 * Builds the subscription streams. Every stream starts with the current state, read after the
 * instance is already listening for changes, so nothing falls between the two.
 */
export class LiveService {
  readonly hub: ChannelHub;
  readonly watch: SaleStatusWatch;
  private readonly feeds: SaleFeeds;
  private readonly viewers: ViewerFeed;
  private readonly streams = new Set<{ end(): void }>();
  private readonly gauge: Gauge<'field'>;
  /** Public subscription events executed once for every local subscriber (see websocket.ts' broadcasts). */
  readonly sharedExecutions: Counter;

  constructor(private readonly d: LiveDeps) {
    this.hub = new ChannelHub(d.createSubscriber, d.log.child({ part: 'hub' }));
    this.feeds = new SaleFeeds({ engine: d.engine, sales: d.sales, events: d.events, hub: this.hub, intervalMs: d.stockIntervalMs ?? 100, log: d.log });
    this.viewers = new ViewerFeed(this.hub, `${globEscape(d.prefix)}events:*`, d.reservations, d.orders, d.log);
    this.watch = new SaleStatusWatch(d.engine, d.redis, d.events, d.log.child({ part: 'status-watch' }));
    this.gauge = new Gauge({ name: 'flashsale_subscriptions_open', help: 'open GraphQL subscriptions on this instance, by field', labelNames: ['field'], registers: [d.registry] });
    for (const field of ['stockChanged', 'saleStatusChanged', 'reservationChanged', 'orderChanged', 'waitlistChanged', 'queueChanged'] as const) this.gauge.set({ field }, 0);
    this.sharedExecutions = new Counter({
      name: 'flashsale_subscription_shared_executions_total',
      help: 'events of public subscriptions executed once for all their subscribers on this instance (one per event and distinct document and variables)',
      registers: [d.registry],
    });
  }

  /** The sale's stock: the current state, then coalesced changes with every item and a rising version. */
  stockChanged(saleId: string): Promise<LiveStream<FeedState>> {
    return this.openSale(new FeedStream(this, 'stockChanged'), saleId);
  }

  /** The sale, whenever its status differs from the last one this subscriber was sent. */
  saleStatusChanged(saleId: string): Promise<LiveStream<FeedState>> {
    return this.openSale(new FeedStream(this, 'saleStatusChanged'), saleId);
  }

  /** The viewer's reservations (of one sale, or all): the ones they hold or recently ended, then each change. */
  reservationChanged(viewer: Viewer, saleId: string | null): Promise<LiveStream<ReservationView>> {
    return this.open<ReservationView>('reservationChanged', async (stream) => {
      const leave = await this.viewers.join(viewer.id, (change) => {
        if (change.kind !== 'reservation' || (saleId && change.reservation.saleId !== saleId)) return;
        stream.push(change.reservation, change.reservation.id);
      });
      try {
        const current = await this.d.reservations.ofCustomer(viewer.id, saleId);
        stream.prime(current.reverse().map((r) => ({ key: r.id, value: r })));
      } catch (err) {
        leave();
        throw err;
      }
      return leave;
    });
  }

  /** The viewer's orders: their latest order as the current state, then each confirmation or cancellation. */
  orderChanged(viewer: Viewer): Promise<LiveStream<OrderRow>> {
    return this.open<OrderRow>('orderChanged', async (stream) => {
      const leave = await this.viewers.join(viewer.id, (change) => {
        if (change.kind === 'order') stream.push(change.order, change.order.id);
      });
      try {
        const latest = await this.d.orders.ofCustomer(viewer.id, { first: 1 });
        stream.prime(latest.nodes.map((o) => ({ key: o.id, value: o })));
      } catch (err) {
        leave();
        throw err;
      }
      return leave;
    });
  }

  /**
   * The viewer's waitlist entries of a sale: the WAITING and OFFERED ones first, then their
   * changes. An offer (or any change of the viewer's own entry) comes at once; position moves
   * caused by others are read at most every `positionEveryMs` per stream, and sent only if moved.
   */
  waitlistChanged(viewer: Viewer, saleId: string, positionEveryMs = 2000): Promise<LiveStream<WaitlistEntryView>> {
    const sent = new Map<string, string>();
    const accept = (e: WaitlistEntryView) => {
      const seen = `${e.status}|${e.position}|${e.offerId ?? ''}`;
      if (sent.get(e.id) === seen) return false;
      sent.set(e.id, seen);
      return true;
    };
    return this.open<WaitlistEntryView>('waitlistChanged', async (stream) => {
      let chain = Promise.resolve();
      const lastRead = new Map<string, number>();
      const pending = new Map<string, NodeJS.Timeout>();
      const read = (itemId: string) => {
        lastRead.set(itemId, Date.now());
        chain = chain
          .then(() => this.d.waitlist.entry(saleId, itemId, viewer.id))
          .then((e) => { if (e) stream.push(e, e.id); })
          .catch((err) => this.d.log.warn({ err: String(err) }, 'waitlist read failed'));
      };
      const leave = await this.viewers.join(viewer.id, (change) => {
        if (change.kind !== 'waitlist' || change.saleId !== saleId) return;
        if (change.targeted) return read(change.saleItemId);
        if (pending.has(change.saleItemId)) return;
        const wait = Math.max(0, (lastRead.get(change.saleItemId) ?? 0) + positionEveryMs - Date.now());
        pending.set(change.saleItemId, setTimeout(() => {
          pending.delete(change.saleItemId);
          read(change.saleItemId);
        }, wait));
      });
      const stop = () => {
        for (const t of pending.values()) clearTimeout(t);
        leave();
      };
      try {
        const current = await this.d.waitlist.entriesOf(viewer.id, saleId);
        stream.prime(current.map((e) => ({ key: e.id, value: e })));
      } catch (err) {
        stop();
        throw err;
      }
      return stop;
    }, accept);
  }

  /**
   * The viewer's waiting-room ticket of a sale: the current one first (or, without a ticket yet,
   * the first one they take), then admission and expiry at once and position moves at most every
   * `positionEveryMs`; an unchanged ticket is not sent again.
   */
  queueChanged(viewer: Viewer, saleId: string, positionEveryMs = 2000): Promise<LiveStream<QueueTicketView>> {
    let sent = '';
    const accept = (q: QueueTicketView) => {
      const seen = `${q.status}|${q.position}|${q.saleSoldOut}|${q.holdsMayFree}|${q.admissionToken ?? ''}`;
      if (seen === sent) return false;
      sent = seen;
      return true;
    };
    return this.open<QueueTicketView>('queueChanged', async (stream) => {
      const { current, stop } = await this.d.waitingRoom.follow(viewer, saleId, positionEveryMs, (q) => stream.push(q, 'ticket'));
      stream.prime(current ? [{ key: 'ticket', value: current }] : []);
      return stop;
    }, accept);
  }

  /** Open streams on this instance (all fields). */
  get openStreams(): number {
    return this.streams.size;
  }

  /** Ends every stream (SSE responses finish, WebSocket subscriptions complete) and closes the pub/sub connection. */
  async close(): Promise<void> {
    for (const stream of [...this.streams]) stream.end();
    this.feeds.close();
    await this.hub.close();
  }

  /** Joins the sale's feed (listening first), then primes the stream with the current state. */
  private async openSale(stream: FeedStream, saleId: string): Promise<LiveStream<FeedState>> {
    this.track(stream, stream.field);
    try {
      stream.membership = await this.feeds.join(saleId, stream);
      stream.prime([{ key: 'state', value: await stream.membership.feed.current() }]);
    } catch (err) {
      stream.end();
      throw err;
    }
    // The consumer (or a shutdown) may have ended the stream while it was being set up.
    if (stream.closed) stream.membership.leave();
    return stream;
  }

  /** Counts a stream as open until it ends (`forget`). */
  track(stream: { end(): void }, field: LiveField): void {
    this.streams.add(stream);
    this.gauge.inc({ field });
  }

  forget(stream: { end(): void }, field: LiveField): void {
    if (this.streams.delete(stream)) this.gauge.dec({ field });
  }

  private async open<T>(field: LiveField, setup: (stream: LiveStream<T>) => Promise<() => void>, accept: ((value: T) => boolean) | null = null): Promise<LiveStream<T>> {
    let cleanup: (() => void) | null = null;
    const stream: LiveStream<T> = new LiveStream<T>(() => {
      cleanup?.();
      this.forget(stream, field);
    }, accept);
    this.track(stream, field);
    try {
      cleanup = await setup(stream);
    } catch (err) {
      stream.end();
      throw err;
    }
    // The consumer (or a shutdown) may have ended the stream while it was being set up.
    if (stream.closed) cleanup();
    return stream;
  }
}

/**
 * A stockChanged or saleStatusChanged subscriber: its own listener on the sale's feed, with the
 * field's rule for what is news. One object per subscriber, no closures: a sale may have 20,000.
 */
class FeedStream extends LiveStream<FeedState> implements FeedListener {
  membership: FeedMembership | null = null;
  private lastVersion = -1;
  private lastNow = -1;
  private lastStatus = '';

  constructor(
    private readonly owner: LiveService,
    readonly field: 'stockChanged' | 'saleStatusChanged',
  ) {
    super();
  }

  feedState(state: FeedState): void {
    this.push(state, 'state');
  }

  protected override accepts(state: FeedState): boolean {
    return this.field === 'stockChanged' ? this.acceptsStock(state) : this.acceptsStatus(state);
  }

  protected override ended(): void {
    this.membership?.leave();
    this.owner.forget(this, this.field);
  }

  /** Every new version (or a resync), and a status change at the same version (the clock's). */
  private acceptsStock(state: FeedState): boolean {
    const { version, status } = state.stock;
    const now = state.status.snapshot.now;
    if (!state.forced && (version < this.lastVersion || (version === this.lastVersion && (now < this.lastNow || status === this.lastStatus)))) return false;
    [this.lastVersion, this.lastNow, this.lastStatus] = [version, now, status];
    return true;
  }

  /** A status that differs from the last one sent, read no earlier than it. */
  private acceptsStatus(state: FeedState): boolean {
    const { status, snapshot } = state.status;
    if (snapshot.version < this.lastVersion || (snapshot.version === this.lastVersion && snapshot.now < this.lastNow)) return false;
    [this.lastVersion, this.lastNow] = [snapshot.version, snapshot.now];
    if (status === this.lastStatus) return false;
    this.lastStatus = status;
    return true;
  }
}
