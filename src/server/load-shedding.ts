import type { IncomingMessage, ServerResponse } from 'node:http';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import {
  GraphQLError,
  GraphQLObjectType,
  GraphQLSchema,
  defaultFieldResolver,
  getNamedType,
  isUnionType,
  responsePathAsArray,
  type GraphQLFieldConfig,
  type GraphQLFieldResolver,
} from 'graphql';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Config } from '../config.js';
import type { Viewer } from '../services/auth.js';
import { rejected } from '../services/errors.js';

export type SaturationReason = 'in-flight' | 'event-loop';

/** An HTTP request's part in the count: waiting for its body, counted, released (a subscription) or done. */
interface Tracked {
  state: 'waiting' | 'counted' | 'released' | 'done';
  verdict: SaturationReason | null;
}

/** Whether Node will read a body for this request (a declared length above 0, or chunked). */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

export interface LoadShedderOptions {
  /** Shed while more GraphQL requests than this are in flight; 0 never. */
  maxInFlight: number;
  /** Shed while the event loop's p99 delay over the last window is above this; 0 never. */
  maxEventLoopDelayMs: number;
  retryAfterSeconds: number;
  /** How long each event-loop delay sample window lasts. */
  windowMs?: number;
  registry?: Registry;
  log: Logger;
}

/**
 * Tells whether this process is saturated. A saturated process that keeps accepting buying calls
 * only makes every caller wait longer (and time out, and retry): answering the new ones at once
 * with "retry in a second" keeps latency bounded for the calls it already holds.
 *
 * The verdict is taken when a request has arrived (its body too), so the requests admitted before
 * the process got busy finish normally and only later arrivals are turned away.
 */
export class LoadShedder {
  private inFlight = 0;
  private delayP99Ms = 0;
  private readonly histogram: IntervalHistogram | null;
  private readonly timer: NodeJS.Timeout | null;
  private readonly tracked = new WeakMap<IncomingMessage, Tracked>();
  private readonly shed: Counter<'reason'> | null;

  static fromConfig(config: Config, registry: Registry, log: Logger): LoadShedder {
    return new LoadShedder({
      maxInFlight: config.LOAD_SHED_MAX_IN_FLIGHT,
      maxEventLoopDelayMs: config.LOAD_SHED_EVENT_LOOP_P99_MS ?? (config.NODE_ENV === 'test' ? 0 : 1000),
      retryAfterSeconds: config.LOAD_SHED_RETRY_AFTER_SECONDS,
      registry,
      log,
    });
  }

  constructor(private readonly opts: LoadShedderOptions) {
    const windowMs = opts.windowMs ?? 1000;
    if (opts.maxEventLoopDelayMs > 0) {
      this.histogram = monitorEventLoopDelay({ resolution: 10 });
      this.histogram.enable();
      this.timer = setInterval(() => this.sample(), windowMs);
      this.timer.unref();
    } else {
      this.histogram = null;
      this.timer = null;
    }
    if (opts.registry) {
      this.shed = new Counter({ name: 'flashsale_load_shed_total', help: 'Mutations answered TEMPORARILY_UNAVAILABLE because the process was saturated', labelNames: ['reason'], registers: [opts.registry] });
      const self = this;
      new Gauge({ name: 'flashsale_graphql_in_flight', help: 'GraphQL HTTP requests being served', registers: [opts.registry], collect() { this.set(self.inFlight); } });
      new Gauge({ name: 'flashsale_event_loop_delay_p99_seconds', help: 'p99 event-loop delay over the last sample window', registers: [opts.registry], collect() { this.set(self.delayP99Ms / 1000); } });
    } else {
      this.shed = null;
    }
  }

  private sample(): void {
    if (!this.histogram) return;
    const p99 = this.histogram.count > 0 ? this.histogram.percentile(99) / 1e6 : 0;
    if (p99 > this.opts.maxEventLoopDelayMs && this.delayP99Ms <= this.opts.maxEventLoopDelayMs) {
      this.opts.log.warn({ p99Ms: Math.round(p99) }, 'event loop saturated; shedding new mutations');
    }
    this.delayP99Ms = p99;
    this.histogram.reset();
  }

  /**
   * Counts an HTTP request as in flight from the moment its body has arrived (at once when it has
   * none) until its response is closed, and judges it then. A client that sends its headers and
   * trickles or stalls its body is not work in progress, so it neither pushes the process over its
   * limit nor is shed itself until it has said what it wants; the request timeout closes it
   * (hardening). Every request that reaches GraphQL is tracked, SSE included: a mutation whose
   * answer is wanted as an event stream is shed like any other; a subscription stops counting as
   * soon as it is subscribed (`release`), since an open stream is a reader, not work.
   */
  track(req: IncomingMessage, res: ServerResponse): void {
    const tracked: Tracked = { state: 'waiting', verdict: null };
    this.tracked.set(req, tracked);
    const arrived = () => {
      if (tracked.state !== 'waiting') return;
      tracked.state = 'counted';
      this.inFlight++;
      tracked.verdict = this.saturation();
    };
    // 'end' is emitted once whoever reads the body (the fast lane, Yoga) has read all of it;
    // registered first, so the verdict is there before they act on the body.
    if (hasBody(req)) req.once('end', arrived);
    else arrived();
    res.once('close', () => {
      if (tracked.state === 'counted') this.inFlight--;
      tracked.state = 'done';
    });
  }

  /** The request no longer counts as in flight (its subscription is open); it keeps its verdict. */
  release(req: IncomingMessage | undefined): void {
    const tracked = req && this.tracked.get(req);
    if (tracked?.state !== 'counted') return;
    tracked.state = 'released';
    this.inFlight--;
  }

  /**
   * The verdict for an HTTP request (taken when its body arrived), or now for a call over a
   * WebSocket: its request is the connection's upgrade, which may have arrived long before.
   */
  verdict(req: IncomingMessage | undefined): SaturationReason | null {
    if (!req || req.headers.upgrade !== undefined) return this.saturation();
    return this.tracked.get(req)?.verdict ?? null;
  }

  /** HTTP requests counted as in flight now (the `flashsale_graphql_in_flight` gauge). */
  get inFlightCount(): number {
    return this.inFlight;
  }

  saturation(): SaturationReason | null {
    if (this.opts.maxInFlight > 0 && this.inFlight > this.opts.maxInFlight) return 'in-flight';
    if (this.opts.maxEventLoopDelayMs > 0 && this.delayP99Ms > this.opts.maxEventLoopDelayMs) return 'event-loop';
    return null;
  }

  get retryAfterSeconds(): number {
    return this.opts.retryAfterSeconds;
  }

  recordShed(reason: SaturationReason): void {
    this.shed?.inc({ reason });
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.histogram?.disable();
  }
}

interface ShedContext {
  viewer?: Viewer | null;
  req?: IncomingMessage;
}

/**
 * The schema with every root mutation guarded: while the process is saturated, a customer's
 * mutation that returns a union with `Rejected` answers `Rejected` TEMPORARILY_UNAVAILABLE with
 * `retryAfterSeconds` (a value the client already handles, HTTP 200), any other a GraphQL error
 * with the same code. Nothing of the mutation runs. Admins are never shed (they may be pausing
 * the sale that causes the load); calls without a viewer go through to fail fast on their own,
 * except login and register, whose password hashing is the costliest thing we do.
 */
export function withLoadShedding(schema: GraphQLSchema, shedder: LoadShedder): GraphQLSchema {
  const mutation = schema.getMutationType();
  const subscription = schema.getSubscriptionType();
  const schemaConfig = schema.toConfig();
  const replaced = new Set<unknown>([mutation, subscription]);
  return new GraphQLSchema({
    ...schemaConfig,
    mutation: mutation && rewrite(mutation, (name, field) => ({ ...field, resolve: guard(name, field, shedder) })),
    // A subscription over SSE counted while it was set up; once subscribed, its open stream is a reader.
    subscription: subscription && rewrite(subscription, (_name, field) => ({ ...field, subscribe: released(field, shedder) })),
    types: schemaConfig.types.filter((t) => !replaced.has(t)),
  });
}

function rewrite(type: GraphQLObjectType, map: (name: string, field: GraphQLFieldConfig<unknown, unknown>) => GraphQLFieldConfig<unknown, unknown>): GraphQLObjectType {
  const config = type.toConfig();
  const fields: Record<string, GraphQLFieldConfig<unknown, unknown>> = {};
  for (const [name, field] of Object.entries(config.fields)) fields[name] = map(name, field);
  return new GraphQLObjectType({ ...config, fields });
}

function released(field: GraphQLFieldConfig<unknown, unknown>, shedder: LoadShedder): GraphQLFieldResolver<unknown, unknown> | undefined {
  const subscribe = field.subscribe;
  if (!subscribe) return undefined;
  return (source, args, context, info) => {
    shedder.release((context as ShedContext | undefined)?.req);
    return subscribe(source, args, context, info);
  };
}

function guard(name: string, field: GraphQLFieldConfig<unknown, unknown>, shedder: LoadShedder): GraphQLFieldResolver<unknown, unknown> {
  const resolve = field.resolve ?? defaultFieldResolver;
  const named = getNamedType(field.type);
  const answersRejected = isUnionType(named) && named.getTypes().some((t) => t.name === 'Rejected');
  const anonymousAllowed = name === 'login' || name === 'register';
  return (source, args, context, info) => {
    const ctx = context as ShedContext;
    const viewer = ctx.viewer ?? null;
    if (viewer?.role === 'admin' || (!viewer && !anonymousAllowed)) return resolve(source, args, context, info);
    const reason = shedder.verdict(ctx.req);
    if (!reason) return resolve(source, args, context, info);
    shedder.recordShed(reason);
    const retryAfterSeconds = shedder.retryAfterSeconds;
    const message = 'We are very busy this second; nothing was done. Please retry shortly.';
    if (answersRejected) return rejected('TEMPORARILY_UNAVAILABLE', { retryAfterSeconds, message });
    // Located already (it has its path), so it reaches the client as it is, not as an unexpected error.
    throw new GraphQLError(message, {
      nodes: info.fieldNodes,
      path: responsePathAsArray(info.path),
      extensions: { code: 'TEMPORARILY_UNAVAILABLE', retryAfterSeconds, http: { headers: { 'Retry-After': String(retryAfterSeconds) } } },
    });
  };
}
