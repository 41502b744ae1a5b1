import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { RedisClient } from '../../redis.js';
import type { SaleEvent } from '../sale-events.js';

export type EventListener = (event: SaleEvent) => void;

/**
 * The instance's one Redis pub/sub connection. Each channel (or pattern) is subscribed once per
 * instance however many local listeners it has, and unsubscribed when the last one leaves, so
 * Redis' fan-out cost grows with instances, not with clients.
 *
 * After the connection drops and returns, messages published meanwhile are lost: the hub
 * re-subscribes, waits for Redis to confirm, then tells its resync listeners to read fresh state.
 */
export class ChannelHub {
  /** Unique per instance, so an operator (or a test) can find this connection in CLIENT LIST. */
  readonly connectionName = `flashsale-sub-${randomBytes(4).toString('hex')}`;
  private client: RedisClient | null = null;
  private readonly channels = new Map<string, { listeners: Set<EventListener>; subscribed: Promise<unknown> }>();
  private readonly patterns = new Map<string, { listeners: Set<EventListener>; subscribed: Promise<unknown> }>();
  private readonly resyncListeners = new Set<() => void>();
  private dropped = false;
  private closed = false;

  constructor(
    private readonly connect: (connectionName: string) => RedisClient,
    private readonly log: Logger,
  ) {}

  /** Resolves once Redis confirmed the subscription, so nothing published afterwards is missed. */
  async listen(channel: string, listener: EventListener): Promise<() => void> {
    return this.add(this.channels, channel, listener, (c) => c.subscribe(channel), (c) => c.unsubscribe(channel));
  }

  async listenPattern(pattern: string, listener: EventListener): Promise<() => void> {
    return this.add(this.patterns, pattern, listener, (c) => c.psubscribe(pattern), (c) => c.punsubscribe(pattern));
  }

  /** Called after the connection came back: events may have been missed, so read state again. */
  onResync(listener: () => void): () => void {
    this.resyncListeners.add(listener);
    return () => this.resyncListeners.delete(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.channels.clear();
    this.patterns.clear();
    const client = this.client;
    this.client = null;
    if (client) await client.quit().catch(() => client.disconnect());
  }

  private async add(
    registry: Map<string, { listeners: Set<EventListener>; subscribed: Promise<unknown> }>,
    name: string,
    listener: EventListener,
    subscribe: (c: RedisClient) => Promise<unknown>,
    unsubscribe: (c: RedisClient) => Promise<unknown>,
  ): Promise<() => void> {
    if (this.closed) throw new Error('the live hub is closed');
    const client = this.connection();
    let entry = registry.get(name);
    if (!entry) {
      entry = { listeners: new Set(), subscribed: subscribe(client) };
      registry.set(name, entry);
    }
    entry.listeners.add(listener);
    const current = entry;
    const remove = () => {
      if (!current.listeners.delete(listener) || current.listeners.size > 0) return;
      if (registry.get(name) !== current) return;
      registry.delete(name);
      if (this.client) unsubscribe(this.client).catch((err) => this.log.debug({ err: String(err), name }, 'unsubscribe failed'));
    };
    try {
      await current.subscribed;
    } catch (err) {
      remove();
      throw err;
    }
    return remove;
  }

  private connection(): RedisClient {
    if (this.client) return this.client;
    const client = this.connect(this.connectionName);
    client.on('message', (channel: string, message: string) => this.deliver(this.channels.get(channel)?.listeners, message));
    client.on('pmessage', (pattern: string, _channel: string, message: string) => this.deliver(this.patterns.get(pattern)?.listeners, message));
    client.on('close', () => {
      if (!this.closed) this.dropped = true;
    });
    client.on('ready', () => {
      if (!this.dropped || this.closed) return;
      this.dropped = false;
      void this.resubscribe(client);
    });
    client.on('error', (err: Error) => this.log.warn({ err: err.message }, 'pub/sub connection error'));
    this.client = client;
    return client;
  }

  private async resubscribe(client: RedisClient): Promise<void> {
    // ioredis re-subscribes by itself too; subscribing again is a no-op for Redis, and awaiting it
    // here is what tells us the subscriptions are live before anyone reads state.
    const channels = [...this.channels.keys()];
    const patterns = [...this.patterns.keys()];
    try {
      if (channels.length) await client.subscribe(...channels);
      if (patterns.length) await client.psubscribe(...patterns);
    } catch (err) {
      this.log.warn({ err: String(err) }, 're-subscribe after reconnect failed');
      return;
    }
    this.log.info({ channels: channels.length, patterns: patterns.length }, 'pub/sub connection restored; resyncing subscribers');
    for (const listener of this.resyncListeners) listener();
  }

  /** A message is one event, or a JSON array of the events one instance published in one turn. */
  private deliver(listeners: Set<EventListener> | undefined, message: string): void {
    if (!listeners || listeners.size === 0) return;
    let events: SaleEvent | SaleEvent[];
    try {
      events = JSON.parse(message) as SaleEvent | SaleEvent[];
    } catch {
      this.log.warn({ message: message.slice(0, 200) }, 'unreadable event ignored');
      return;
    }
    for (const event of Array.isArray(events) ? events : [events]) for (const listener of listeners) listener(event);
  }
}
