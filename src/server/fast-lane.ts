import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { getOperationAST, parse, type ExecutionResult } from 'graphql';
import { processRegularResult, type YogaServerInstance } from 'graphql-yoga';
import { getCORSHeadersByRequestAndOptions, type CORSOptions } from '@whatwg-node/server';
import { Counter, type Histogram, type Registry } from 'prom-client';
import { operationLabel } from './known-operations.js';
import { PersistedOperations } from './persisted-operations.js';
import type { CacheTicket, ResponseCache } from './response-cache.js';
import { acceptedRequestId, REQUEST_ID_HEADER } from './request-logging.js';

/** Bodies this small are read whole before deciding; larger ones go to Yoga untouched. */
const MAX_BODY_BYTES = 16 * 1024;
const PARAM_KEYS = new Set(['query', 'variables', 'operationName', 'extensions', 'documentId']);
/** Distinct documents remembered; clients send a handful, so a full map means someone is varying them. */
const MAX_REMEMBERED_DOCUMENTS = 1_000;
/** Distinct Accept values remembered; clients send a few, the same on every request. */
const MAX_REMEMBERED_ACCEPTS = 64;

type Params = { query?: string; variables?: Record<string, unknown> | null; operationName?: string | null; extensions?: Record<string, unknown> | null; documentId?: string };
type Operation = { operationName: string; operationType: string };

/**
 * Answers the common GraphQL request (one JSON POST to /graphql, a JSON answer wanted), from a
 * browser too, without Yoga's Node-to-Fetch adapter, which cost more than the purchase itself: a
 * Fetch Request with an AbortSignal per request, a body stream piped through the size limit, and a
 * Fetch Response copied back to Node. The request still goes through the same Yoga instance from
 * its parameters on (`getResultForParams`): persisted-operation lookup, parse and validation
 * caches, context, every envelop plugin (rate limits, masking, logging, metrics), and the answer
 * is built by Yoga's own `processRegularResult`. What this lane does itself is only what the
 * adapter did: the request id header, a browser's CORS headers (computed by the function Yoga's
 * CORS plugin calls, from the same options), the HTTP-duration metric, and writing the bytes.
 *
 * Anything else (GET, OPTIONS, batches, SSE or multipart Accept, chunked or large bodies,
 * malformed JSON or parameters) goes to Yoga as before, with the body already read handed over,
 * so its answers, errors included, are Yoga's.
 */
export class FastLane {
  /** By document text, then operation name: no key is built per request (a persisted text is the same string every time). */
  private readonly operations = new Map<string, Map<string, Operation | null>>();
  /** `jsonMediaType` of each Accept value seen. */
  private readonly mediaTypes = new Map<string | undefined, string | null>();
  private readonly httpDuration: Histogram | undefined;
  private readonly lanes: Counter<'lane'>;

  constructor(
    private readonly yoga: YogaServerInstance<Record<string, unknown>, Record<string, unknown>>,
    private readonly persisted: PersistedOperations,
    registry: Registry,
    /** The CORS options Yoga was given (`hardening.cors`). */
    private readonly cors: CORSOptions | false,
    /** Anonymous stock reads answered from here while their sale is unchanged; null: off. */
    private readonly cache: ResponseCache | null = null,
  ) {
    this.httpDuration = registry.getSingleMetric('graphql_yoga_http_duration') as Histogram | undefined;
    this.lanes = new Counter({
      name: 'flashsale_graphql_http_requests_total',
      help: 'GraphQL HTTP requests by the way they were handled: cache (the response cache), fast (the fast lane) or yoga (the full adapter)',
      labelNames: ['lane'],
      registers: [registry],
    });
  }

  /** Handles the request, or hands it (and any body read so far) to `yoga`. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    const mediaType = this.eligible(req);
    if (!mediaType) {
      this.toYoga(req, res);
      return;
    }
    const started = performance.now();
    readBody(req, Number(req.headers['content-length'])).then(
      (body) => {
        const key = this.cache?.keyOf(req, body) ?? null;
        const cached = key === null ? undefined : this.cache!.cached(key);
        if (cached) {
          this.lanes.inc({ lane: 'cache' });
          return this.cache!.serve(req, res, cached, started, this.corsHeaders(req));
        }
        const params = this.paramsOf(body);
        const operation = params && this.operationOf(params);
        if (!params || !operation) {
          // whatwg-node reads a Buffer in `req.body` as the request body, the stream being spent.
          (req as IncomingMessage & { body?: Buffer }).body = body;
          return this.toYoga(req, res);
        }
        this.lanes.inc({ lane: 'fast' });
        return this.answer(req, res, params, operation, mediaType, started, key === null ? null : this.cache!.begin(key, params));
      },
      () => {
        if (!res.headersSent) res.writeHead(400, { connection: 'close' });
        res.end();
      },
    ).catch((err: unknown) => {
      // Yoga answers every error of an operation itself; reaching here is a bug of ours, and it
      // must cost one answer, not the process (an unhandled rejection would end it).
      this.yoga.logger.error(err);
      if (res.headersSent) res.destroy();
      else res.writeHead(500, { 'content-type': 'application/json; charset=utf-8' }).end('{"errors":[{"message":"Unexpected error.","extensions":{"code":"INTERNAL_SERVER_ERROR"}}]}');
    });
  }

  private toYoga(req: IncomingMessage, res: ServerResponse): void {
    this.lanes.inc({ lane: 'yoga' });
    void this.yoga(req, res);
  }

  private eligible(req: IncomingMessage): string | null {
    if (req.method !== 'POST' || req.url !== '/graphql') return null;
    const type = req.headers['content-type'];
    if (!type || !/^application\/json\s*(;\s*charset=utf-8\s*)?$/i.test(type)) return null;
    const length = Number(req.headers['content-length']);
    if (!(length > 0 && length <= MAX_BODY_BYTES) || req.headers['transfer-encoding'] !== undefined) return null;
    const accept = req.headers.accept;
    let mediaType = this.mediaTypes.get(accept);
    if (mediaType === undefined) {
      mediaType = jsonMediaType(accept);
      if (this.mediaTypes.size >= MAX_REMEMBERED_ACCEPTS) this.mediaTypes.clear();
      this.mediaTypes.set(accept, mediaType);
    }
    return mediaType;
  }

  /** The body's parameters when they are ones Yoga would accept as they are; else null. */
  private paramsOf(body: Buffer): Params | null {
    let params: unknown;
    try {
      params = JSON.parse(body.toString('utf8'));
    } catch {
      return null;
    }
    if (!isObject(params)) return null;
    for (const key of Object.keys(params)) if (!PARAM_KEYS.has(key)) return null;
    const { query, variables, operationName, extensions, documentId } = params;
    if (query !== undefined && typeof query !== 'string') return null;
    if (variables != null && !isObject(variables)) return null;
    if (operationName != null && typeof operationName !== 'string') return null;
    if (extensions != null && !isObject(extensions)) return null;
    if (documentId !== undefined && typeof documentId !== 'string') return null;
    if (query === undefined) {
      const id = PersistedOperations.idOf(params);
      if (id === null || this.persisted.get(id) === undefined) return null;
    } else if (extensions != null && extensions.persistedQuery !== undefined) {
      // An automatic persisted query's registration (src/server/apq.ts): its hash check may
      // refuse it before execution, which only Yoga's full path answers; and it must never be a
      // response-cache hit, which would skip registering it. Hash-only requests of registered
      // (not trusted) hashes go to Yoga above, their text being in Redis.
      return null;
    }
    return params as Params;
  }

  /**
   * The query or mutation the parameters name; null for a subscription (its answer is a stream,
   * Yoga's business) and for a document that does not parse or name one operation (Yoga's answer).
   */
  private operationOf(params: Params): Operation | null {
    const text = params.query ?? this.persisted.get(PersistedOperations.idOf(params) ?? '') ?? '';
    const name = params.operationName ?? '';
    let byName = this.operations.get(text);
    let op = byName?.get(name);
    if (op === undefined) {
      op = null;
      try {
        const ast = getOperationAST(parse(text), params.operationName);
        if (ast && ast.operation !== 'subscription') op = { operationName: ast.name?.value ?? 'Anonymous', operationType: ast.operation };
      } catch {
        // Yoga answers the syntax error.
      }
      if (!byName) {
        if (this.operations.size >= MAX_REMEMBERED_DOCUMENTS) this.operations.clear();
        this.operations.set(text, (byName = new Map()));
      }
      // A document names few operations; any name not among them is answered null and remembered too.
      if (byName.size < 16) byName.set(name, op);
    }
    return op;
  }

  private async answer(req: IncomingMessage, res: ServerResponse, params: Params, operation: Operation, mediaType: string, started: number, ticket: CacheTicket | null): Promise<void> {
    const requestId = acceptedRequestId(req.headers[REQUEST_ID_HEADER]) ?? randomUUID();
    // The request id plugin and the logs read it from the request, as they do on Yoga's path.
    req.headers[REQUEST_ID_HEADER] = requestId;
    // No body and no AbortSignal: the parameters are already here, and nothing we run is cancellable.
    const request = new this.yoga.fetchAPI.Request(`http://localhost${req.url}`, { method: 'POST', headers: req.headers as Record<string, string> });
    const context: Record<string, unknown> = { req, res };
    const result = (await this.yoga.getResultForParams({ params: params as Parameters<typeof this.yoga.getResultForParams>[0]['params'], request }, context)) as ExecutionResult;
    const response = processRegularResult(result, this.yoga.fetchAPI, mediaType);
    const text = await response.text();
    if (res.destroyed) return;
    const headers: Record<string, string> = { [REQUEST_ID_HEADER]: requestId };
    response.headers.forEach((value: string, name: string) => {
      headers[name] = value;
    });
    headers['content-length'] = String(Buffer.byteLength(text));
    res.writeHead(response.status, { ...headers, ...this.corsHeaders(req) }).end(text);
    // Kept without the CORS headers: a hit is answered with those of its own Origin.
    if (ticket) this.cache!.keep(ticket, response.status, headers, text);
    this.httpDuration?.observe({ operationName: operationLabel(operation.operationName), operationType: operation.operationType, method: 'POST', statusCode: response.status }, (performance.now() - started) / 1000);
  }

  /** What Yoga's CORS plugin adds to every answer to a request with an Origin; none without one. */
  private corsHeaders(req: IncomingMessage): Record<string, string> | undefined {
    if (req.headers.origin === undefined || this.cors === false) return undefined;
    const request = { headers: { get: (name: string) => headerValue(req.headers[name]) } } as Parameters<typeof getCORSHeadersByRequestAndOptions>[0];
    const headers = getCORSHeadersByRequestAndOptions(request, this.cors);
    if (!headers) return undefined;
    // Fetch Headers, which Yoga's answer is built in, name them in lower case.
    const lower: Record<string, string> = {};
    for (const name in headers) lower[name.toLowerCase()] = headers[name];
    return lower;
  }
}

function headerValue(value: string | string[] | undefined): string | null {
  return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value;
}

/**
 * The media type Yoga would answer a single result with, when it is a JSON one; null when Yoga
 * would pick SSE or multipart, or nothing (those stay with Yoga). Yoga takes the first Accept entry
 * (utf-8 only) that a JSON type matches, preferring application/json when both match.
 */
function jsonMediaType(accept: string | undefined): string | null {
  for (const entry of (accept ?? '*/*').replace(/\s/g, '').toLowerCase().split(',')) {
    const [type, ...params] = entry.split(';');
    const charset = params.find((p) => p.includes('charset=')) ?? 'charset=utf-8';
    if (charset !== 'charset=utf-8') continue;
    const [pre, suf] = type.split('/');
    if ((pre === '*' || pre === 'application') && (suf === '*' || suf === 'json')) return 'application/json';
    if (type === 'application/graphql-response+json') return 'application/graphql-response+json';
    if (type === 'text/event-stream' || type === 'multipart/mixed') return null;
  }
  return null;
}

function readBody(req: IncomingMessage, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > length) req.destroy();
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    req.on('error', reject);
    req.on('aborted', () => reject(new Error('aborted')));
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
