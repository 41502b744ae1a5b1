import type { IncomingMessage } from 'node:http';
import { useRateLimiter, type Identity, type Store } from '@envelop/rate-limiter';
import { getOperationAST, GraphQLError, Kind, type DefinitionNode, type DocumentNode, type OperationDefinitionNode, type SelectionSetNode, type ExecutionArgs, type ExecutionResult, type GraphQLSchema } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { RedisClient } from '../redis.js';
import type { Context } from '../schema/context.js';
import type { Viewer } from '../services/auth.js';
import { rateLimited } from '../services/errors.js';
import type { RateCounter, RateRule } from '../services/rate-counter.js';
import { clientAddress } from './rate-limit.js';

/** Queries (HTTP, SSE, graphql-ws) or subscriptions started (SSE, graphql-ws, shared or not). */
export type QueryBucket = 'query' | 'subscribe';
/** A customer by id when the request has a valid customer token, else the client's address. */
export type QueryAxis = 'customer' | 'ip';

export interface QueryRateLimit {
  bucket: QueryBucket;
  by: QueryAxis;
  rule: RateRule;
}

/** The limits the configuration asks for; a setting of "off" leaves its limit out. */
export function queryRateLimitsFromConfig(config: Config): QueryRateLimit[] {
  if (!config.RATE_LIMIT_ENABLED) return [];
  const limits: [QueryBucket, QueryAxis, RateRule | null][] = [
    ['query', 'customer', config.RATE_LIMIT_QUERY_PER_CUSTOMER],
    ['query', 'ip', config.RATE_LIMIT_QUERY_PER_IP],
    ['subscribe', 'customer', config.RATE_LIMIT_SUBSCRIBE_PER_CUSTOMER],
    ['subscribe', 'ip', config.RATE_LIMIT_SUBSCRIBE_PER_IP],
  ];
  return limits.filter((l): l is [QueryBucket, QueryAxis, RateRule] => l[2] !== null).map(([bucket, by, rule]) => ({ bucket, by, rule }));
}

const ROOT_TYPE: Record<QueryBucket, string> = { query: 'Query', subscribe: 'Subscription' };
/** The store's verdicts as the limiter reads them, with `max: 1`: no call in the window, or one that never expires. */
const ALLOWED: readonly number[] = Object.freeze([]);
const REFUSED: readonly number[] = Object.freeze([Number.MAX_SAFE_INTEGER / 2]);

/**
 * A store for @envelop/rate-limiter that counts in Redis, atomically, shared by every instance.
 *
 * The limiter's own protocol is get the caller's timestamps, decide, set them back: two round trips
 * that concurrent calls interleave (its RedisStore over-admits bursts), and a list that grows with
 * `max`. Here `getForIdentity` *is* the count: one script (src/services/rate-hit.lua: INCR, and
 * PEXPIRE on the window's first hit) on a fixed window's counter, aligned to the clock so every
 * instance — and the error — knows when it ends. The rule is the store's (one store per bucket
 * and axis; the limiter passes no rule to `get`), and its answer is a verdict the limiter,
 * configured with `max: 1`, reads as such: no timestamp when the call is within the rule, one
 * that never expires when it is over (`kept + 1 > 1`). Answering `max` timestamps instead would
 * make the limiter copy a list of `max` numbers at every refusal (and allocate 10 million of them
 * for a limit lifted to "10000000/1s"). `setForIdentity` has nothing left to do.
 *
 * Fails open: while Redis is not connected, or a script fails, calls are let through (reading
 * stock needs Redis anyway; a limiter that locks everyone out would not help).
 */
export class WindowCounterStore implements Store {
  private lastWarning = 0;

  constructor(
    private readonly counter: RateCounter,
    private readonly redis: RedisClient,
    /** The counters' name, e.g. "query:ip"; the identity and window index follow it. */
    private readonly name: string,
    readonly rule: RateRule,
    private readonly log: Logger,
  ) {}

  async getForIdentity(identity: Identity): Promise<readonly number[]> {
    return (await this.hit(identity.contextIdentity)) ? ALLOWED : REFUSED;
  }

  setForIdentity(): void {
    // Counted by getForIdentity, in the same script as the decision.
  }

  /** Counts one call of `who` in the current window; false when it is over the limit. */
  async hit(who: string, now = Date.now()): Promise<boolean> {
    if (this.redis.status !== 'ready') return true;
    const window = Math.floor(now / this.rule.windowMs);
    try {
      const { allowed } = await this.counter.hit(this.counter.check(`${this.name}:${who}:${window}`, this.rule));
      return allowed;
    } catch (err) {
      if (now - this.lastWarning > 10_000) {
        this.lastWarning = now;
        this.log.warn({ err }, 'query rate limiter unavailable; letting calls through');
      }
      return true;
    }
  }

  /** Until the current window ends: when a refused caller may come back. */
  retryAfterMs(now = Date.now()): number {
    return this.rule.windowMs - (now % this.rule.windowMs);
  }
}

type LimiterPlugin = ReturnType<typeof useRateLimiter>;
type LimiterExecute = NonNullable<LimiterPlugin['onExecute']>;
interface Limiter {
  limit: QueryRateLimit;
  store: WindowCounterStore;
  plugin: LimiterPlugin;
}
type RequestContext = Partial<Context> & { req?: IncomingMessage; extra?: { request?: IncomingMessage } };

/** What a subscription served the shared way (src/server/websocket.ts) is: no Yoga, no plugins. */
export interface SharedSubscription {
  schema: GraphQLSchema;
  document: DocumentNode;
  operationName: string | null | undefined;
  variableValues: Record<string, unknown> | null | undefined;
}

/**
 * Per-client limits on queries and on subscriptions started, with @envelop/rate-limiter on the
 * root fields of Query and of Subscription (`configByField`), its store being `WindowCounterStore`.
 *
 * - Each root field selected counts one call (every alias; fields inside fragments on the root
 *   type too); an operation with a field over the limit runs nothing and answers HTTP 200,
 *   `data: null` and, per refused field, `extensions.code` RATE_LIMITED with `retryAfterSeconds`
 *   (and a Retry-After header over HTTP).
 * - A client is a customer (by id) when the token is a valid customer's, else its address
 *   (`clientAddress`, with TRUST_PROXY_HOPS); each has its own rule. Admins are never limited.
 * - Queries are limited in `onExecute` (mutations are the buying limiter's, src/server/rate-limit.ts).
 *   The limiter itself only hooks execution; its `onExecute` is run from `onSubscribe` too, so a
 *   subscription over SSE or graphql-ws is refused with the same error (in a `next`, then
 *   `complete`) and the client's other subscriptions go on. A graphql-ws subscription served the
 *   shared way skips Yoga: `admitShared` runs the same limiter for it.
 * - Not counted: anonymous reads the response cache answers before Yoga runs (src/server/
 *   response-cache.ts); counting each would cost a Redis round trip more than serving it.
 */
export class QueryRateLimits {
  private readonly limiters = new Map<string, Limiter>();

  constructor(private readonly o: {
    counter: RateCounter;
    redis: RedisClient;
    limits: QueryRateLimit[];
    trustProxyHops: number;
    /** Who a graphql-ws connection's token names, for subscriptions that skip Yoga's context. */
    authenticate: (authorization: string | null) => Promise<{ viewer: Viewer | null }>;
    log: Logger;
  }) {
    for (const limit of o.limits) {
      const store = new WindowCounterStore(o.counter, o.redis, `${limit.bucket}:${limit.by}`, limit.rule, o.log);
      const identifyFn = limit.by === 'customer'
        ? (ctx: unknown) => `c:${(ctx as RequestContext).viewer!.id}`
        : (ctx: unknown) => `ip:${clientAddress((ctx as RequestContext).req ?? (ctx as RequestContext).extra?.request, o.trustProxyHops)}`;
      const plugin = useRateLimiter({
        identifyFn,
        store,
        // max 1: the store's verdict (see WindowCounterStore); the window only sets the limiter's own Retry-After, replaced here.
        configByField: [{ type: ROOT_TYPE[limit.bucket], field: '*', max: 1, window: `${limit.rule.windowMs}ms` }],
      });
      this.limiters.set(`${limit.bucket}:${limit.by}`, { limit, store, plugin });
    }
  }

  get enabled(): boolean {
    return this.limiters.size > 0;
  }

  plugin(): Plugin<Context> {
    if (!this.enabled) return {};
    return {
      onExecute: ({ args, setResultAndStopExecution }) => {
        const operation = getOperationAST(args.document, args.operationName);
        return operation?.operation === 'query' ? this.check('query', operation, args, setResultAndStopExecution) : undefined;
      },
      onSubscribe: ({ args, setResultAndStopExecution }) => {
        const operation = getOperationAST(args.document, args.operationName);
        return operation?.operation === 'subscription' ? this.check('subscribe', operation, args, setResultAndStopExecution) : undefined;
      },
    };
  }

  /** For a graphql-ws subscription served the shared way: the errors refusing it, or null. */
  admitShared = async (op: SharedSubscription, request: IncomingMessage, authorization: string | null): Promise<readonly GraphQLError[] | null> => {
    if (!this.enabled) return null;
    const { viewer } = await this.o.authenticate(authorization);
    const contextValue: RequestContext = { viewer, req: request };
    const operation = getOperationAST(op.document, op.operationName);
    if (!operation) return null;
    let refusal: readonly GraphQLError[] | null = null;
    await this.check('subscribe', operation, { ...op, contextValue }, (result) => (refusal = result.errors ?? null));
    return refusal;
  };

  /** Runs the limiter of this bucket and client on the operation; over the limit, sets the refusal. */
  private check(bucket: QueryBucket, operation: OperationDefinitionNode, args: ExecutionArgs, refuse: (result: ExecutionResult) => void): Promise<void> | undefined {
    const ctx = args.contextValue as RequestContext;
    if (ctx.viewer?.role === 'admin') return undefined;
    const limiter = this.limiters.get(`${bucket}:${ctx.viewer ? 'customer' : 'ip'}`);
    if (!limiter) return undefined;
    let limited: readonly GraphQLError[] = [];
    // A copy of args (the limiter replaces `args.document` by its visited copy), with the root fields only.
    const payload = {
      args: { ...args, document: rootOnly(args.document, operation, args.schema) },
      setResultAndStopExecution: (result: ExecutionResult) => (limited = result.errors ?? []),
      executeFn: undefined,
      setExecuteFn: () => undefined,
      context: ctx,
      extendContext: () => undefined,
    } as unknown as Parameters<LimiterExecute>[0];
    let pending: ReturnType<LimiterExecute>;
    try {
      pending = limiter.plugin.onExecute!(payload);
    } catch (err) {
      // E.g. a shared subscribe's raw variables that its field's arguments refuse: the regular way reports them.
      this.o.log[err instanceof GraphQLError ? 'debug' : 'warn']({ err }, 'query rate limiter failed; letting the operation through');
      return undefined;
    }
    return Promise.resolve(pending).then(
      () => {
        if (limited.length === 0) return;
        const retryAfterMs = limiter.store.retryAfterMs();
        // data: null keeps it a field error answered with HTTP 200, as the buying limiter's.
        refuse({ data: null, errors: limited.map((e) => refusal(bucket, retryAfterMs, e)) });
      },
      (err: unknown) => {
        this.o.log.warn({ err }, 'query rate limiter failed; letting the operation through');
      },
    );
  }
}

/** Root-only copies of operations, made once per parsed document (Yoga's parse cache hands out the same one). */
const rootOnlyDocuments = new WeakMap<OperationDefinitionNode, DocumentNode>();

/**
 * The operation as the limiter needs to see it: its root fields without their selections, and the
 * fragments on a root type they spread, the same way. The limiter walks the whole document with a
 * TypeInfo for every call (~20-45 µs for a sale page's query here), though its configuration only
 * matches root fields; this way each call costs what one root field does. Other operations of the
 * document are left out, so only the one executed counts.
 */
function rootOnly(document: DocumentNode, operation: OperationDefinitionNode, schema: GraphQLSchema): DocumentNode {
  let stripped = rootOnlyDocuments.get(operation);
  if (stripped) return stripped;
  const roots = new Set([schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()].map((t) => t?.name));
  const strip = (set: SelectionSetNode): SelectionSetNode => ({
    ...set,
    selections: set.selections.map((sel) => {
      if (sel.kind === Kind.FIELD) return { ...sel, selectionSet: undefined };
      if (sel.kind === Kind.INLINE_FRAGMENT) return { ...sel, selectionSet: strip(sel.selectionSet) };
      return sel;
    }),
  });
  const definitions: DefinitionNode[] = [{ ...operation, selectionSet: strip(operation.selectionSet) }];
  for (const d of document.definitions) {
    if (d.kind === Kind.FRAGMENT_DEFINITION && roots.has(d.typeCondition.name.value)) definitions.push({ ...d, selectionSet: strip(d.selectionSet) });
  }
  stripped = { ...document, definitions };
  rootOnlyDocuments.set(operation, stripped);
  return stripped;
}

/**
 * The contract's RATE_LIMITED error at the limiter's field; a subscription's has no HTTP headers to
 * set. The path is the root field's response key: the limiter works its path out from graphql-js'
 * visitor path after the store answered, when with an asynchronous store that array is empty.
 */
function refusal(bucket: QueryBucket, retryAfterMs: number, e: GraphQLError): GraphQLError {
  const field = e.nodes?.[0];
  const path = field?.kind === Kind.FIELD ? [field.alias?.value ?? field.name.value] : e.path;
  const error = rateLimited(retryAfterMs, { nodes: e.nodes, path });
  if (bucket === 'query') return error;
  const { http: _http, ...extensions } = error.extensions;
  return new GraphQLError(error.message, { nodes: e.nodes, path, extensions });
}
