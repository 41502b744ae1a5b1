import { useAPQ, type APQStore } from '@graphql-yoga/plugin-apq';
import type { Plugin } from 'graphql-yoga';
import type { Logger } from 'pino';
import type { RedisClient } from '../redis.js';
import type { PersistedOperations } from './persisted-operations.js';

/** What APQ sends: the bare, lower-case hex SHA-256 of the text. Anything else is never looked up. */
const HASH = /^[0-9a-f]{64}$/;
/** Texts this instance already read or registered, by hash; a hash names one text forever, so never stale. */
const MAX_LOCAL_ENTRIES = 500;
/** A Redis that does not answer within this costs the client a resend of its text, never a wait. */
const REDIS_TIMEOUT_MS = 250;

export interface ApqStoreOptions {
  redis: RedisClient;
  prefix: string;
  /** The trusted documents: their hashes answer from memory and are never written to Redis. */
  persisted: PersistedOperations;
  ttlSeconds: number;
  /** Texts longer than this (UTF-8 bytes) are answered but not registered. */
  maxQueryBytes: number;
  log: Logger;
}

/**
 * Automatic persisted queries shared by every instance: `<prefix>apq:<sha256 hex>` → the document
 * text, with a TTL. The plugin registers a text only after checking its hash (a mismatch is
 * PERSISTED_QUERY_MISMATCH and writes nothing). When Redis is unavailable (not connected, an error,
 * or no answer within 250 ms) a lookup finds nothing, so the client is told
 * PERSISTED_QUERY_NOT_FOUND and resends its text, and a registration is skipped: never a 500.
 */
export class RedisApqStore implements APQStore {
  private readonly local = new Map<string, string>();

  constructor(private readonly o: ApqStoreOptions) {}

  private key(hash: string): string {
    return `${this.o.prefix}apq:${hash}`;
  }

  async get(hash: string): Promise<string | null> {
    if (!HASH.test(hash)) return null;
    const known = this.o.persisted.get(hash) ?? this.local.get(hash);
    if (known !== undefined) return known;
    const text = await this.redis((r) => r.get(this.key(hash)));
    if (typeof text === 'string') this.remember(hash, text);
    return typeof text === 'string' ? text : null;
  }

  async set(hash: string, query: string): Promise<void> {
    if (!HASH.test(hash) || this.o.persisted.get(hash) === query || this.local.get(hash) === query) return;
    if (Buffer.byteLength(query, 'utf8') > this.o.maxQueryBytes) return;
    const stored = await this.redis((r) => r.set(this.key(hash), query, 'EX', this.o.ttlSeconds));
    if (stored === 'OK') this.remember(hash, query);
  }

  private remember(hash: string, text: string): void {
    if (this.local.size >= MAX_LOCAL_ENTRIES) this.local.clear();
    this.local.set(hash, text);
  }

  /** The command's answer, or undefined when Redis is not connected, fails or is slow. */
  private async redis<T>(command: (r: RedisClient) => Promise<T>): Promise<T | undefined> {
    // While ioredis reconnects a command would wait in its offline queue.
    if (this.o.redis.status !== 'ready') return undefined;
    let timer: ReturnType<typeof globalThis.setTimeout> | undefined;
    try {
      return await Promise.race([
        command(this.o.redis),
        new Promise<undefined>((resolve) => {
          timer = globalThis.setTimeout(() => resolve(undefined), REDIS_TIMEOUT_MS);
        }),
      ]);
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'APQ store: Redis failed; the client resends its text');
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Yoga's APQ plugin on the shared store. It goes before the trusted-documents plugin: a hash-only
 * request is resolved here (trusted hashes from memory, registered ones from Redis), an unknown
 * one answers 404 PERSISTED_QUERY_NOT_FOUND, hash + text is checked and registered; the
 * trusted-documents plugin then sees a text. `documentId` requests are the trusted plugin's alone.
 *
 * Registration is only offered while arbitrary documents are accepted: with a trusted-documents-only
 * policy it would be a way around it, so `app.ts` leaves this plugin out then.
 */
export function apqPlugin(store: APQStore): Plugin {
  return useAPQ({ store }) as Plugin;
}
