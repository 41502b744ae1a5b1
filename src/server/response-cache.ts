import { randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { GraphQLSchema } from 'graphql';
import type { Logger } from 'pino';
import { Counter, Gauge, type Histogram, type Registry } from 'prom-client';
import { PersistedOperations } from './persisted-operations.js';
import { acceptedRequestId, REQUEST_ID_HEADER } from './request-logging.js';
import { cachePlanOf, salesOfPlan, type CachePlan } from './response-cache-rules.js';

/** The fast lane's limit: only bodies it would read whole are looked up. */
const MAX_BODY_BYTES = 16 * 1024;
const MAX_ENTRIES = 1_000;
/** Answers larger than this are not kept (a sale has at most 100 items; its full answer is far below). */
const MAX_ANSWER_CHARS = 64 * 1024;
const MAX_REMEMBERED_DOCUMENTS = 1_000;
/** Sales whose last change is remembered; past this the whole cache is dropped instead. */
const MAX_TRACKED_SALES = 10_000;
const JSON_CONTENT_TYPE = /^application\/json\s*(;\s*charset=utf-8\s*)?$/i;
/** First Accept entries for which the fast lane answers JSON itself (see its `jsonMediaType`). */
const JSON_ACCEPTS = new Set(['*/*', 'application/*', 'application/json', 'application/graphql-response+json']);

interface Entry {
  text: string;
  headers: OutgoingHttpHeaders;
  saleIds: string[];
  expiresAt: number;
  operationName: string;
}

/** What a miss saw when it started; its answer is kept only if none of it moved meanwhile. */
interface Ticket {
  epoch: number;
  clock: number;
  saleIds: string[];
  startedAt: number;
}

type Params = { query?: unknown; variables?: unknown; operationName?: unknown; extensions?: unknown; documentId?: unknown };

export interface ResponseCacheOptions {
  schema: GraphQLSchema;
  persisted: PersistedOperations;
  registry: Registry;
  /** The longest an answer is served, even when no event came (a lost or late event, a missed transition). */
  maxAgeMs: number;
  log: Logger;
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
 * the miss began (`Ticket`).
 *
 * A request is looked up by its exact bytes and Accept header: a POST to /graphql of JSON, no
 * Authorization, no Origin (CORS answers stay Yoga's), a body the fast lane would read whole. An
 * answer is kept only when it is 200 without `errors`. Hits are answered here with the stored
 * status, headers and body (and the caller's or a new request id); misses are handed on (`next`)
 * with their body put back in the request, so the fast lane, or Yoga, answers them as before.
 */
export class ResponseCache {
  private readonly entries = new Map<string, Entry>();
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

  /**
   * Answers the request from the cache, or hands it to `next` with its body put back unread, so
   * the fast lane (or Yoga, or the load shedder) sees the very request that arrived.
   */
  handle(req: IncomingMessage, res: ServerResponse, next: () => void): void {
    if (!this.serving || !eligible(req)) {
      next();
      return;
    }
    const started = performance.now();
    // Everything from the last chunk read to `next` runs in one go: the body must be back in the
    // stream before Node would end it.
    peekBody(req, Number(req.headers['content-length']), (body) => {
      if (body === null) {
        if (!res.headersSent) res.writeHead(400, { connection: 'close' });
        res.end();
        return;
      }
      try {
        const key = `${req.headers.accept ?? ''}\n${body.toString('latin1')}`;
        const entry = this.entries.get(key);
        if (entry !== undefined) {
          if (entry.expiresAt > Date.now()) return this.serve(req, res, entry, started);
          this.drop(key);
        }
        req.unshift(body);
        const read = this.cacheableRead(body);
        if (read) {
          this.requests.inc({ result: 'miss' });
          const ticket: Ticket = { epoch: this.epoch, clock: this.clock, saleIds: read.saleIds, startedAt: Date.now() };
          captureAnswer(res, (status, headers, text) => this.store(key, ticket, read.plan, status, headers, text));
        }
      } catch (err) {
        // A bug of ours must cost one answer, never the process.
        this.o.log.error({ err }, 'response cache failed a request');
        if (res.headersSent) res.destroy();
        else res.writeHead(500, { 'content-type': 'application/json; charset=utf-8' }).end('{"errors":[{"message":"Unexpected error.","extensions":{"code":"INTERNAL_SERVER_ERROR"}}]}');
        return;
      }
      next();
    });
  }

  private serve(req: IncomingMessage, res: ServerResponse, entry: Entry, started: number): void {
    this.requests.inc({ result: 'hit' });
    res.setHeader(REQUEST_ID_HEADER, acceptedRequestId(req.headers[REQUEST_ID_HEADER]) ?? randomUUID());
    res.writeHead(200, entry.headers).end(entry.text);
    this.httpDuration?.observe({ operationName: entry.operationName, operationType: 'query', method: 'POST', statusCode: 200 }, (performance.now() - started) / 1000);
  }

  /** The plan and sales of a body whose answer may be shared; null for anything else. */
  private cacheableRead(body: Buffer): { plan: CachePlan; saleIds: string[] } | null {
    let params: Params;
    try {
      params = JSON.parse(body.toString('utf8')) as Params;
    } catch {
      return null;
    }
    if (typeof params !== 'object' || params === null || Array.isArray(params)) return null;
    const id = params.query === undefined ? PersistedOperations.idOf(params) : null;
    const text = typeof params.query === 'string' ? params.query : id !== null ? this.o.persisted.get(id) : undefined;
    if (text === undefined) return null;
    const operationName = typeof params.operationName === 'string' ? params.operationName : null;
    const planKey = `${operationName ?? ''}\0${text}`;
    let plan = this.plans.get(planKey);
    if (plan === undefined) {
      plan = cachePlanOf(this.o.schema, text, operationName);
      if (this.plans.size >= MAX_REMEMBERED_DOCUMENTS) this.plans.clear();
      this.plans.set(planKey, plan);
    }
    if (!plan) return null;
    const variables = params.variables;
    if (variables != null && (typeof variables !== 'object' || Array.isArray(variables))) return null;
    const saleIds = salesOfPlan(plan, variables as Record<string, unknown> | null | undefined);
    return saleIds ? { plan, saleIds } : null;
  }

  private store(key: string, ticket: Ticket, plan: CachePlan, status: number, headers: OutgoingHttpHeaders, text: string): void {
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

  private unchangedSince(ticket: Ticket): boolean {
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

/** A subset of what the fast lane takes, so a miss gets the fast lane's answer, which can be kept. */
function eligible(req: IncomingMessage): boolean {
  if (req.method !== 'POST' || req.url !== '/graphql') return false;
  const h = req.headers;
  if (h.authorization !== undefined || h.origin !== undefined || h['transfer-encoding'] !== undefined) return false;
  const type = h['content-type'];
  if (!type || !JSON_CONTENT_TYPE.test(type)) return false;
  const length = Number(h['content-length']);
  if (!(length > 0 && length <= MAX_BODY_BYTES)) return false;
  return h.accept === undefined || JSON_ACCEPTS.has(h.accept.split(',', 1)[0].trim().toLowerCase());
}

/**
 * Reads the whole body (`length` bytes) in paused mode, stopping at its last byte so the stream
 * has not ended yet: the caller may `unshift` it back, in the same turn, for the next reader.
 * `done(null)` when the client went away or sent more than it announced.
 */
function peekBody(req: IncomingMessage, length: number, done: (body: Buffer | null) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const finish = (body: Buffer | null) => {
    if (finished) return;
    finished = true;
    req.removeListener('readable', onReadable);
    req.removeListener('error', onFailure);
    req.removeListener('aborted', onFailure);
    req.removeListener('end', onFailure);
    done(body);
  };
  const onFailure = () => finish(null);
  const onReadable = () => {
    let chunk: Buffer | null;
    while (size < length && (chunk = req.read() as Buffer | null) !== null) {
      size += chunk.length;
      chunks.push(chunk);
    }
    if (size > length) {
      req.destroy();
      finish(null);
    } else if (size === length) {
      finish(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    }
  };
  req.on('readable', onReadable);
  req.on('error', onFailure);
  req.on('aborted', onFailure);
  req.on('end', onFailure);
}

/**
 * Calls `onAnswer` with what is written as one `writeHead(status, headers)` and `end(text)` (the
 * fast lane's way); an answer written any other way (streamed, headers set one by one) is not seen.
 */
function captureAnswer(res: ServerResponse, onAnswer: (status: number, headers: OutgoingHttpHeaders, text: string) => void): void {
  const own = res as unknown as Record<string, unknown>;
  const writeHead = res.writeHead;
  const end = res.end;
  let status = 0;
  let headers: OutgoingHttpHeaders | null = null;
  own.writeHead = function (this: ServerResponse, code: number, ...rest: unknown[]) {
    status = code;
    const given = rest.find((r) => typeof r === 'object' && r !== null && !Array.isArray(r));
    headers = given ? (given as OutgoingHttpHeaders) : null;
    return (writeHead as (...a: unknown[]) => ServerResponse).call(this, code, ...rest);
  };
  own.end = function (this: ServerResponse, ...args: unknown[]) {
    own.writeHead = writeHead;
    own.end = end;
    if (typeof args[0] === 'string' && headers) onAnswer(status, headers, args[0]);
    return (end as (...a: unknown[]) => ServerResponse).apply(this, args);
  };
}
