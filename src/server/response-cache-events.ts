import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { RedisClient } from '../redis.js';
import type { SaleEvents } from '../services/sale-events.js';
import type { ResponseCache } from './response-cache.js';

/** Redis glob characters in the prefix must match literally. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

/**
 * Tells the response cache when a sale changed. Every change of a sale's live figures or status
 * is published on the sale's channel (`SaleEvents`: stock scripts' callers, admin changes, hold
 * expiry and releases, the status watch's clock transitions, rebuilds), so:
 *
 * - **this instance's changes** are seen as they are published: `SaleEvents.onPublish` drops the
 *   sale's answers first, synchronously, before the command is sent. Services publish before they
 *   return, so a mutation's answer is never followed by a stale cached read on the same instance;
 * - **every instance's changes** (its own included) arrive on a pattern subscription of its own
 *   connection (`<prefix>events:*`): other instances' answers go within the pub/sub delay.
 *
 * The cache serves only while that subscription is confirmed: when the connection closes it
 * drops everything and stops serving; once Redis confirms the subscription again it starts
 * afresh. Whatever slips through (an event lost without the connection noticing) lives at most
 * the cache's max age.
 */
export class ResponseCacheInvalidation {
  /** Names this instance's connection in CLIENT LIST: the key prefix (so instances of one deployment are found together) and a random tag. */
  readonly connectionName: string;
  private client: RedisClient | null = null;
  private subscribing: Promise<void> | null = null;
  private closed = false;
  private readonly pattern: string;
  private readonly channelStart: string;

  constructor(
    private readonly cache: ResponseCache,
    private readonly connect: (connectionName: string) => RedisClient,
    private readonly prefix: string,
    private readonly log: Logger,
  ) {
    this.pattern = `${globEscape(prefix)}events:*`;
    this.channelStart = `${prefix}events:{sale:`;
    this.connectionName = `flashsale-cache-${prefix.replace(/[^A-Za-z0-9:_-]/g, '_')}-${randomBytes(4).toString('hex')}`;
  }

  /** Opens the subscription; resolves once Redis confirmed it (or gave up for now: it retries on reconnect). */
  async start(events: SaleEvents): Promise<void> {
    events.onPublish((saleId) => this.cache.invalidateSale(saleId, 'local'));
    const client = this.connect(this.connectionName);
    this.client = client;
    client.on('pmessage', (_pattern: string, channel: string) => this.changed(channel));
    client.on('close', () => {
      if (this.closed) return;
      if (this.cache.live) this.log.warn('event subscription lost: response cache off until it is back');
      this.cache.setLive(false);
    });
    client.on('ready', () => {
      if (!this.closed && !this.cache.live) void this.subscribe(client);
    });
    await this.subscribe(client);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.cache.setLive(false);
    const client = this.client;
    this.client = null;
    if (client) await client.quit().catch(() => client.disconnect());
  }

  private subscribe(client: RedisClient): Promise<void> {
    this.subscribing ??= (async () => {
      try {
        await client.psubscribe(this.pattern);
      } catch (err) {
        this.log.warn({ err: String(err) }, 'event subscription failed: response cache off until Redis is back');
        return;
      } finally {
        this.subscribing = null;
      }
      // Closed again while the reply was on its way: the next 'ready' subscribes again.
      if (this.closed || client.status !== 'ready') return;
      if (!this.cache.live) this.log.info('event subscription confirmed: response cache on');
      this.cache.setLive(true);
    })();
    return this.subscribing;
  }

  private changed(channel: string): void {
    if (channel.startsWith(this.channelStart) && channel.endsWith('}')) {
      this.cache.invalidateSale(channel.slice(this.channelStart.length, -1), 'pubsub');
    } else if (channel.startsWith(`${this.prefix}events:`)) {
      // A channel of ours this code does not know: whatever it says, nothing may stay stale.
      this.cache.flush();
    }
  }
}
