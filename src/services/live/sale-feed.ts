import type { Logger } from 'pino';
import type { SaleRow } from '../../db/types.js';
import type { SaleEvent, SaleEvents } from '../sale-events.js';
import { deriveStatus, type SaleStatus } from '../sale-status.js';
import type { SalesService } from '../sales.js';
import type { SaleSnapshot, StockEngine } from '../stock/engine.js';
import type { ChannelHub } from './channel-hub.js';

export interface StockLevelView {
  saleItemId: string;
  available: number;
  reserved: number;
  sold: number;
}

export interface StockUpdateView {
  saleId: string;
  status: SaleStatus;
  version: number;
  items: StockLevelView[];
  at: Date;
}

/** A sale with the snapshot its status was derived from, so the resolver shows the figures that were compared. */
export interface SaleStatusView {
  sale: SaleRow;
  status: SaleStatus;
  snapshot: SaleSnapshot;
}

/** What one read of the sale gives every local listener. `forced` marks a resync after missed events. */
export interface FeedState {
  stock: StockUpdateView;
  status: SaleStatusView;
  forced: boolean;
}

/** A feed's listener (an object, not a closure: there may be 20,000 per sale). */
export interface FeedListener {
  feedState(state: FeedState): void;
}

interface FeedDeps {
  engine: StockEngine;
  sales: SalesService;
  events: SaleEvents;
  hub: ChannelHub;
  /** Minimum gap between two deliveries of stock-only changes on this instance: 100 ms gives at most ~10 events a second. */
  intervalMs: number;
  log: Logger;
}

/** Listeners served per turn of the event loop; between turns other work (purchases, reads) runs. */
const DELIVERY_CHUNK = 1000;
/** Reads follow changes at most this often, so a status change is seen within this much of its event. */
const MAX_READ_GAP_MS = 25;
/** A delivery may start again only after twice its last duration: fan-out takes at most ~1/3 of the time. */
const DELIVERY_GAP_FACTOR = 2;

/**
 * One sale's local hub on this instance. Events on the sale's channel only say "something
 * changed"; the feed then reads the whole sale from Redis (one snapshot script call) and hands that
 * state to every local subscriber.
 *
 * Reading and delivering are paced apart. Reads follow changes closely (at most every 25 ms), so a
 * status change (SOLD_OUT, PAUSED, ENDED...) is delivered as soon as it is read, ahead of anything
 * else. Stock-only changes are coalesced: delivered at most once per `intervalMs`, and no more often
 * than every twice the last delivery's duration, so thousands of subscribers cannot take the whole
 * process. A delivery goes to the listeners in chunks, one per turn of the event loop; a status change
 * read meanwhile restarts it with the newer state. Whatever arrives while a read or delivery is in
 * progress is followed by another, so the last state is always delivered however a burst ends.
 */
export class SaleFeed {
  private readonly listeners = new Set<FeedListener>();
  private itemOrder: string[] = [];
  private sale!: SaleRow;
  /** The sale's revision (see SaleSnapshot.revision) the row was read under; undefined: not known yet. */
  private rowRevision: string | null | undefined = undefined;
  private dirty = false;
  private saleDirty = false;
  private forced = false;
  private reading: Promise<FeedState | null> | null = null;
  private lastReadAt = 0;
  private readTimer: NodeJS.Timeout | null = null;
  /** The newest state read that not every listener was handed yet, and whether it must go at once. */
  private pending: FeedState | null = null;
  private urgent = false;
  /** The state last handed (or being handed) to the listeners. */
  private delivered: FeedState | null = null;
  private delivering = false;
  private lastDeliveryAt = 0;
  private lastDeliveryMs = 0;
  private deliveryTimer: NodeJS.Timeout | null = null;
  private unlisten: (() => void) | null = null;
  private stopped = false;

  constructor(
    readonly saleId: string,
    private readonly d: FeedDeps,
  ) {}

  get size(): number {
    return this.listeners.size;
  }

  /** Subscribes to the sale's channel before any read, so no change can fall between the two. */
  async start(): Promise<void> {
    this.unlisten = await this.d.hub.listen(this.d.events.channel(this.saleId), (e) => this.onEvent(e));
    try {
      this.sale = await this.d.sales.requireSale(this.saleId);
      const [items] = await this.d.sales.itemsBySaleIds([this.saleId]);
      this.itemOrder = items.map((i) => i.id);
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  add(listener: FeedListener): void {
    this.listeners.add(listener);
  }

  remove(listener: FeedListener): boolean {
    return this.listeners.delete(listener);
  }

  /** The current state, sharing a read already in flight. */
  async current(): Promise<FeedState> {
    const state = await (this.reading ?? this.read());
    if (state) return state;
    // The sale's live state is missing (being rebuilt): SalesService knows how to bring it back or say why not.
    return this.toState(await this.d.sales.snapshot(this.saleId), false);
  }

  resync(): void {
    this.forced = true;
    this.markDirty();
  }

  stop(): void {
    this.stopped = true;
    if (this.readTimer) clearTimeout(this.readTimer);
    if (this.deliveryTimer) clearTimeout(this.deliveryTimer);
    this.readTimer = this.deliveryTimer = null;
    this.pending = null;
    this.unlisten?.();
    this.unlisten = null;
    this.listeners.clear();
  }

  private onEvent(event: SaleEvent): void {
    if (event.type === 'sale') this.saleDirty = true;
    if (event.type === 'stock' || event.type === 'sale') this.markDirty();
  }

  private markDirty(): void {
    this.dirty = true;
    this.scheduleRead();
  }

  private scheduleRead(): void {
    if (this.stopped || this.readTimer || this.reading || !this.dirty) return;
    const wait = Math.max(0, this.lastReadAt + Math.min(this.d.intervalMs, MAX_READ_GAP_MS) - Date.now());
    this.readTimer = setTimeout(() => {
      this.readTimer = null;
      // A subscriber's first read may have started meanwhile; its end schedules the next one.
      if (!this.reading && this.dirty) void this.read();
    }, wait);
  }

  private read(): Promise<FeedState | null> {
    this.dirty = false;
    const forced = this.forced;
    const saleEvent = this.saleDirty;
    this.forced = false;
    this.saleDirty = false;
    this.lastReadAt = Date.now();
    const reading = (async () => {
      try {
        const snap = await this.d.engine.snapshot(this.saleId);
        if (!snap) {
          this.saleDirty ||= saleEvent;
          return null;
        }
        // Admin changes write a new revision with the change; status changes ('sale' events too) leave the row as it is.
        if (snap.revision === null ? saleEvent : snap.revision !== this.rowRevision) {
          this.sale = await this.d.sales.requireSale(this.saleId);
          this.rowRevision = snap.revision;
        }
        const state = this.toState(snap, forced);
        this.offer(state);
        return state;
      } catch (err) {
        // Redis or PostgreSQL hiccup: keep the change pending and try again on the next tick.
        this.dirty = true;
        this.forced ||= forced;
        this.saleDirty ||= saleEvent;
        this.d.log.warn({ err: String(err), saleId: this.saleId }, 'live read failed');
        return null;
      }
    })();
    this.reading = reading;
    void reading.finally(() => {
      if (this.reading === reading) this.reading = null;
      this.scheduleRead();
    });
    return reading;
  }

  /** A state just read: news (a new version or status, or a resync) is queued for the listeners. */
  private offer(state: FeedState): void {
    const latest = this.pending ?? this.delivered;
    const statusChanged = latest !== null && latest.stock.status !== state.stock.status;
    if (!state.forced && latest && !statusChanged && latest.stock.version === state.stock.version) return;
    this.pending = state;
    this.urgent ||= statusChanged || state.forced || latest === null;
    this.scheduleDelivery();
  }

  private scheduleDelivery(): void {
    if (this.stopped || this.delivering || !this.pending) return;
    const gap = Math.max(this.d.intervalMs, DELIVERY_GAP_FACTOR * this.lastDeliveryMs);
    const wait = this.urgent ? 0 : this.lastDeliveryAt + gap - Date.now();
    if (wait <= 0) {
      if (this.deliveryTimer) clearTimeout(this.deliveryTimer);
      this.deliveryTimer = null;
      void this.deliver();
      return;
    }
    if (this.deliveryTimer) return;
    this.deliveryTimer = setTimeout(() => {
      this.deliveryTimer = null;
      this.scheduleDelivery();
    }, wait);
  }

  private async deliver(): Promise<void> {
    this.delivering = true;
    this.lastDeliveryAt = Date.now();
    const started = performance.now();
    try {
      while (this.pending && !this.stopped) {
        const state = this.pending;
        this.pending = null;
        this.urgent = false;
        this.delivered = state;
        const listeners = [...this.listeners];
        for (let i = 0; i < listeners.length; i++) {
          if (this.listeners.has(listeners[i])) listeners[i].feedState(state);
          if ((i + 1) % DELIVERY_CHUNK !== 0 || i + 1 === listeners.length) continue;
          await new Promise((resolve) => setImmediate(resolve));
          // A status change read meanwhile goes to everyone now, the ones already served included.
          if (this.stopped || this.urgent) break;
        }
        if (!this.urgent) break;
      }
      // Let the last chunk's frames be written before timing the delivery.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      this.lastDeliveryMs = performance.now() - started;
      this.delivering = false;
      // A stock-only change read meanwhile waits for the next slot.
      if (this.deliveryTimer) clearTimeout(this.deliveryTimer);
      this.deliveryTimer = null;
      this.scheduleDelivery();
    }
  }

  private toState(snap: SaleSnapshot, forced: boolean): FeedState {
    const status = deriveStatus(snap);
    const ids = this.itemOrder.length === snap.items.size ? this.itemOrder : [...snap.items.keys()].sort();
    const items = ids.map((saleItemId) => {
      const level = snap.items.get(saleItemId);
      return { saleItemId, available: level?.available ?? 0, reserved: level?.reserved ?? 0, sold: level?.sold ?? 0 };
    });
    return {
      stock: { saleId: this.saleId, status, version: snap.version, items, at: new Date(snap.now) },
      status: { sale: this.sale, status, snapshot: snap },
      forced,
    };
  }
}

/** This instance's feeds, one per sale that has local subscribers; a feed lives as long as they do. */
export class SaleFeeds {
  private readonly feeds = new Map<string, Promise<SaleFeed>>();
  private readonly stopResync: () => void;

  constructor(private readonly d: FeedDeps) {
    this.stopResync = d.hub.onResync(() => {
      for (const feed of this.feeds.values()) void feed.then((f) => f.resync(), () => undefined);
    });
  }

  /** Joins the sale's feed; leaving it as the last member stops it. */
  async join(saleId: string, listener: FeedListener): Promise<FeedMembership> {
    let pending = this.feeds.get(saleId);
    if (!pending) {
      const feed = new SaleFeed(saleId, this.d);
      pending = feed.start().then(() => feed);
      this.feeds.set(saleId, pending);
      pending.catch(() => {
        if (this.feeds.get(saleId) === pending) this.feeds.delete(saleId);
      });
    }
    const feed = await pending;
    // The last subscriber may have left (and stopped the feed) while this one waited for its start.
    if (this.feeds.get(saleId) !== pending) return this.join(saleId, listener);
    feed.add(listener);
    return new FeedMembership(this, feed, pending, listener);
  }

  /** Called by a membership: the last one to leave stops the feed. */
  left(feed: SaleFeed, pending: Promise<SaleFeed>): void {
    if (feed.size > 0 || this.feeds.get(feed.saleId) !== pending) return;
    this.feeds.delete(feed.saleId);
    feed.stop();
  }

  close(): void {
    this.stopResync();
    for (const pending of this.feeds.values()) void pending.then((f) => f.stop(), () => undefined);
    this.feeds.clear();
  }
}

/** One listener's place in a sale's feed (an object rather than closures: there may be 20,000). */
export class FeedMembership {
  constructor(
    private readonly feeds: SaleFeeds,
    readonly feed: SaleFeed,
    private readonly pending: Promise<SaleFeed>,
    private readonly listener: FeedListener,
  ) {}

  leave(): void {
    if (this.feed.remove(this.listener)) this.feeds.left(this.feed, this.pending);
  }
}
