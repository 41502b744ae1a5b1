import { randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { GraphQLSchema } from 'graphql';
import { Counter, Gauge, type Histogram, type Registry } from 'prom-client';
import { operationLabel } from './known-operations.js';
import { PersistedOperations } from './persisted-operations.js';
import { acceptedRequestId, REQUEST_ID_HEADER } from './request-logging.js';
import { cachePlanOf, salesOfPlan, type CachePlan } from './response-cache-rules.js';

const MAX_ENTRIES = 1_000;
/** Answers larger than this are not kept (a sale has at most 100 items; its full answer is far below). */
const MAX_ANSWER_CHARS = 64 * 1024;
const MAX_REMEMBERED_DOCUMENTS = 1_000;
/** Sales whose last change is remembered; past this the whole cache is dropped instead. */
const MAX_TRACKED_SALES = 10_000;

export interface CachedAnswer {
  text: string;
  headers: OutgoingHttpHeaders;
  saleIds: string[];
  expiresAt: number;
  operationName: string;
}

/** What a miss saw when it started; its answer is kept only if none of it moved meanwhile. */
export interface CacheTicket {
  key: string;
  plan: CachePlan;
  epoch: number;
  clock: number;
  saleIds: string[];
  startedAt: number;
}

/** A request's GraphQL parameters, as the fast lane read and checked them. */
type Params = { query?: string; variables?: Record<string, unknown> | null; operationName?: string | null; documentId?: string };

export interface ResponseCacheOptions {
  schema: GraphQLSchema;
  persisted: PersistedOperations;
  registry: Registry;
  /** The longest an answer is served, even when no event came (a lost or late event, a missed transition). */
  maxAgeMs: number;
}

/**
 * Shares the answers of anonymous stock reads (`sale(id)`, `saleItem(id)` with public fields only,
 * see response-cache-rules.ts) between callers, in front of the fast lane, and drops them when
 * their sale changes (ResponseCacheInvalidation tells it: at once for this instance's own changes,
 * within the pub/sub delay for the others'), or after `maxAgeMs` at the latest.
 *
 * Why our own and not @graphql-yoga/plugin-response-cache: that plugin looks answers up inside
 * Yoga (`onParams`), after the fast lane built a Fetch Request, and each hit still goes through
 * `getResultForParams`, `processRegularResult` and a Fetch Response. Measured with the bench
 * (`reads`, 10 s, one session, load 2-3, server CPU per read): no cache 0.198-0.249 ms
 * (2,800-5,650/s); the plugin 0.140-0.156 ms (6,900-7,150/s); this cache 0.056-0.071 ms
 * (11,850-16,180/s). Only the last reaches the 10,000/s of issue #6.
 * The plugin also keeps an answer whose read started before an invalidation and finished after
 * it (until its TTL); here a miss stores its answer only if nothing it depends on changed since
 * the miss began (`CacheTicket`).
 *
 * The fast lane consults it (`keyOf`, `cached`, `serve`; on a miss `begin`, then `keep` with the
 * answer it wrote), so only requests it takes are looked up: a JSON POST to /graphql, here also
 * without Authorization, keyed by the exact body and Accept header. An answer is kept only when
 * it is 200 without `errors`, without CORS headers; a hit is written with the stored status,
 * headers and body, the caller's (or a new) request id and, for a browser, its own CORS headers.
 */
export class ResponseCache {
  private readonly entries = new Map<string, CachedAnswer>();
  private readonly keysBySale = new Map<string, Set<string>>();
  /** The clock value of each sale's last invalidation. */
  private readonly lastChange = new Map<string, number>();
  private readonly plans = new Map<string, CachePlan | null>();
  private clock = 0;
  /** Moves when everything is dropped; tickets from before are void. */
  private epoch = 0;
  private serving = false;
  private readonly requests: Counter<'result'>;
  private readonly invalidations: Counter<'source'>;
  private readonly httpDuration: Histogram | undefined;

  constructor(private readonly o: ResponseCacheOptions) {
    this.requests = new Counter({
      name: 'flashsale_response_cache_requests_total',
      help: 'anonymous cacheable GraphQL reads: hit (answered from the response cache) or miss (executed)',
      labelNames: ['result'],
      registers: [o.registry],
    });
    this.invalidations = new Counter({
      name: 'flashsale_response_cache_invalidations_total',
      help: 'response cache invalidations: local (a change made by this instance), pubsub (an event from any instance), flush (all dropped: the event subscription went down or came back)',
      labelNames: ['source'],
      registers: [o.registry],
    });
    for (const result of ['hit', 'miss']) this.requests.inc({ result }, 0);
    for (const source of ['local', 'pubsub', 'flush']) this.invalidations.inc({ source }, 0);
    const entries = this.entries;
    new Gauge({
      name: 'flashsale_response_cache_entries', help: 'answers held by the response cache', registers: [o.registry],
      collect() {
        this.set(entries.size);
      },
    });
    const cache = this;
    new Gauge({
      name: 'flashsale_response_cache_serving', help: '1 while the response cache serves (its event subscription is up), else 0', registers: [o.registry],
      collect() {
        this.set(cache.serving ? 1 : 0);
      },
    });
    this.httpDuration = o.registry.getSingleMetric('graphql_yoga_http_duration') as Histogram | undefined;
  }

  get live(): boolean {
    return this.serving;
  }

  /** Serve only while every change is heard; going down or coming back drops everything. */
  setLive(live: boolean): void {
    this.flush();
    this.serving = live;
  }

  /** Drops every answer that depends on the sale, and voids misses of it still in flight. */
  invalidateSale(saleId: string, source: 'local' | 'pubsub'): void {
    this.invalidations.inc({ source });
    if (this.lastChange.size >= MAX_TRACKED_SALES && !this.lastChange.has(saleId)) {
      this.flush();
      return;
    }
    this.lastChange.set(saleId, ++this.clock);
    const keys = this.keysBySale.get(saleId);
    if (!keys) return;
    for (const key of [...keys]) this.drop(key);
  }

  flush(): void {
    this.invalidations.inc({ source: 'flush' });
    this.epoch++;
    this.entries.clear();
    this.keysBySale.clear();
    this.lastChange.clear();
  }

  /** The key of an anonymous request's body, while the cache serves; null when it may not be shared. */
  keyOf(req: IncomingMessage, body: Buffer): string | null {
    if (!this.serving || req.headers.authorization !== undefined) return null;
    return `${req.headers.accept ?? ''}\n${body.toString('latin1')}`;
  }

  /** The fresh answer kept under `key`, if any. */
  cached(key: string): CachedAnswer | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined || entry.expiresAt > Date.now()) return entry;
    this.drop(key);
    return undefined;
  }

  /** Writes a hit, with the request's own CORS headers (`cors`) when it came from a browser. */
  serve(req: IncomingMessage, res: ServerResponse, entry: CachedAnswer, started: number, cors?: Record<string, string>): void {
    this.requests.inc({ result: 'hit' });
    res.setHeader(REQUEST_ID_HEADER, acceptedRequestId(req.headers[REQUEST_ID_HEADER]) ?? randomUUID());
    res.writeHead(200, cors ? { ...entry.headers, ...cors } : entry.headers).end(entry.text);
    this.httpDuration?.observe({ operationName: operationLabel(entry.operationName), operationType: 'query', method: 'POST', statusCode: 200 }, (performance.now() - started) / 1000);
  }

  /** A miss about to be executed: a ticket to `keep` its answer with, or null when it may not be shared. */
  begin(key: string, params: Params): CacheTicket | null {
    const id = params.query === undefined ? PersistedOperations.idOf(params) : null;
    const text = params.query ?? (id !== null ? this.o.persisted.get(id) : undefined);
    if (text === undefined) return null;
    const operationName = params.operationName ?? null;
    const planKey = `${operationName ?? ''}\0${text}`;
    let plan = this.plans.get(planKey);
    if (plan === undefined) {
      plan = cachePlanOf(this.o.schema, text, operationName);
      if (this.plans.size >= MAX_REMEMBERED_DOCUMENTS) this.plans.clear();
      this.plans.set(planKey, plan);
    }
    if (!plan) return null;
    const saleIds = salesOfPlan(plan, params.variables);
    if (!saleIds) return null;
    this.requests.inc({ result: 'miss' });
    return { key, plan, epoch: this.epoch, clock: this.clock, saleIds, startedAt: Date.now() };
  }

  /** Keeps the answer written for a miss, unless something it depends on changed since `begin`. */
  keep(ticket: CacheTicket, status: number, headers: OutgoingHttpHeaders, text: string): void {
    const { key, plan } = ticket;
    if (status !== 200 || text.length > MAX_ANSWER_CHARS || !this.unchangedSince(ticket)) return;
    try {
      const answer = JSON.parse(text) as { data?: unknown; errors?: unknown };
      if (answer.errors !== undefined || answer.data == null) return;
    } catch {
      return;
    }
    const kept: OutgoingHttpHeaders = { ...headers };
    delete kept[REQUEST_ID_HEADER];
    if (this.entries.has(key)) this.drop(key);
    if (this.entries.size >= MAX_ENTRIES) this.drop(this.entries.keys().next().value as string);
    this.entries.set(key, { text, headers: kept, saleIds: ticket.saleIds, expiresAt: ticket.startedAt + this.o.maxAgeMs, operationName: plan.operationName });
    for (const saleId of ticket.saleIds) {
      let keys = this.keysBySale.get(saleId);
      if (!keys) this.keysBySale.set(saleId, (keys = new Set()));
      keys.add(key);
    }
  }

  private unchangedSince(ticket: CacheTicket): boolean {
    if (!this.serving || ticket.epoch !== this.epoch) return false;
    return ticket.saleIds.every((id) => (this.lastChange.get(id) ?? 0) <= ticket.clock);
  }

  private drop(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    for (const saleId of entry.saleIds) {
      const keys = this.keysBySale.get(saleId);
      if (!keys) continue;
      keys.delete(key);
      if (keys.size === 0) this.keysBySale.delete(saleId);
    }
  }
}
