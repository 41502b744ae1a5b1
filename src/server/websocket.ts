import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { getOperationAST, GraphQLError, type DocumentNode, type ExecutionArgs, type GraphQLSchema } from 'graphql';
import {
  CloseCode,
  DEPRECATED_GRAPHQL_WS_PROTOCOL,
  handleProtocols,
  makeServer,
  MessageType,
  parseMessage,
  type Context as GraphqlWsContext,
  type OperationResult,
  type SubscribePayload,
  type WebSocket as GraphqlWsSocket,
} from 'graphql-ws';
import type { YogaServerInstance } from 'graphql-yoga';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Context } from '../schema/context.js';
import { createLoaders } from '../schema/loaders.js';
import type { TokenService } from '../services/auth.js';
import { LiveStream, type StreamSink } from '../services/live/live-stream.js';
import { isShareableSubscription, SharedExecutor, type SharedOperation } from '../services/live/shared-execution.js';
import { maskError, withoutHttp } from './error-codes.js';

const MAX_TIMER_MS = 2 ** 31 - 1;
/** graphql-ws' default: a socket that sent no connection_init by then is closed with 4408. */
const CONNECTION_INIT_WAIT_MS = 3000;
/** Distinct shareable documents remembered; clients send a handful, so this only bounds abuse. */
const MAX_SHAREABLE_DOCUMENTS = 256;
/** Distinct (document, variables) remembered: the sales being watched, times a few documents. */
const MAX_SHARED_OPERATIONS = 10_000;
const MAX_SHARED_QUERY_CHARS = 4096;
const MAX_SHARED_VARIABLES_CHARS = 512;
/** A socket closed for sending too much or reading too little is dropped if its close handshake takes longer. */
const POLICY_CLOSE_GRACE_MS = 5000;
/** Close codes of the abuse limits (README, "WebSockets: limits per socket"). */
export const TOO_MANY_MESSAGES = { code: 1008, reason: 'Too many messages' } as const;
export const NOT_READING = { code: 1013, reason: 'Not reading fast enough' } as const;

/** graphql-ws' `Extra` for ws, plus our view of the connection. */
type ConnectionExtra = { socket: WebSocket; request: IncomingMessage; connection: Connection };
type ServerContext = GraphqlWsContext<Record<string, unknown> | undefined, ConnectionExtra>;

/** Yoga's enveloped execute/subscribe for this operation, handed to graphql-ws through rootValue. */
interface EnvelopedRoots {
  execute: (args: ExecutionArgs) => OperationResult;
  subscribe: (args: ExecutionArgs) => OperationResult;
}

interface ShareableDocument {
  id: number;
  query: string;
  schema: GraphQLSchema;
  document: DocumentNode;
}

export interface WebSocketOptions {
  server: Server;
  yoga: YogaServerInstance<Record<string, unknown>, Context>;
  tokens: TokenService;
  maxSubscriptions: number;
  keepAliveMs: number;
  /** Largest message a client may send; a bigger one closes its socket with 1009 (ws's default was 100 MiB). */
  maxPayloadBytes: number;
  /** Frames (messages, pings, pongs) a socket may send: a bucket of `messageBurst` refilled at this rate; over it, 1008. */
  maxMessagesPerSecond: number;
  messageBurst: number;
  /** Bytes waiting to be written to a socket beyond which its client is taken for one that does not read: 1013. */
  maxBufferedBytes: number;
  registry?: Registry;
  log: Logger;
  /**
   * Asked before a subscription is served the shared way, which skips Yoga's plugins (the regular
   * way runs them, rate limits included). Errors refuse it as a plugin's refusal is answered there:
   * a `next` with those errors, then `complete`; the connection's other subscriptions go on.
   */
  admitShared?: (op: SharedOperation, request: IncomingMessage, authorization: string | null) => Promise<readonly GraphQLError[] | null>;
}

export interface WebSocketEndpoint {
  /**
   * Refuses new operations, waits up to `graceMs` for the queries and mutations already running to
   * be answered (a purchase's answer must not be lost), then closes every socket with 1001 "Going away".
   */
  close(graceMs?: number): Promise<void>;
  readonly connections: number;
}

/**
 * GraphQL over WebSocket (graphql-transport-ws) on Yoga's endpoint and http.Server. The bearer
 * token comes in the connection_init payload.
 *
 * Operations run through `yoga.getEnveloped`, so they get the same context, plugins and error
 * masking as HTTP requests, with one exception made for scale: a subscription whose document
 * only selects public fields (see `isShareableSubscription`: today `stockChanged` and
 * `saleStatusChanged` of public types) is served by `Broadcast` once its document was seen and
 * validated. Each of its events is executed and serialised once for every subscriber of this
 * instance, with an anonymous context, and written to each socket as a ready-made frame. Its
 * subscribers cost a few hundred bytes instead of a context, loaders and an execution pipeline
 * each, and a sell-out reaches 10,000 of them in a fraction of a second.
 */
export function attachWebSocket(o: WebSocketOptions): WebSocketEndpoint {
  // autoPong off: ws would answer every ping, however many a client sends without reading the
  // answers; `Connection.pinged` answers only within the socket's message budget.
  const wss = new WebSocketServer({ server: o.server, path: o.yoga.graphqlEndpoint, maxPayload: o.maxPayloadBytes, autoPong: false });
  const limits: SocketLimits = {
    burst: o.messageBurst,
    perMs: o.maxMessagesPerSecond / 1000,
    maxBufferedBytes: o.maxBufferedBytes,
    closed: o.registry
      ? new Counter({ name: 'flashsale_websocket_policy_closes_total', help: 'WebSockets closed for sending too many frames (1008) or not reading what they are sent (1013)', labelNames: ['reason'], registers: [o.registry] })
      : null,
  };
  const log = o.log;
  const contexts = anonymousContexts(o.yoga);
  const shared = new SharedExecutor({
    anonymousContext: contexts,
    maskErrors: (errors) => errors.map((e) => masked(e, log)),
    executed: (context) => (context as Context).services.live.sharedExecutions.inc(),
  });
  /** Shareable documents by query text, parsed and validated once through Yoga (with its plugins' rules). */
  const shareable = new Map<string, ShareableDocument>();
  /** One SharedOperation per document and variables, however many subscribe to it. */
  const operations = new Map<string, SharedOperation>();
  let nextId = 0;
  /** Queries and mutations not answered yet, per connection (only those that have some). */
  const answering = new Map<Connection, Set<string>>();
  let draining = false;
  let allAnswered: (() => void) | null = null;
  const answered = (connection: Connection, id: string | null) => {
    const ids = answering.get(connection);
    if (!ids) return;
    if (id !== null) ids.delete(id);
    if (id === null || ids.size === 0) answering.delete(connection);
    // After graphql-ws' own microtasks: its `complete` frame is queued by then.
    if (answering.size === 0 && allAnswered) setImmediate(allAnswered);
  };

  const server = makeServer<Record<string, unknown> | undefined, ConnectionExtra>({
    connectionInitWaitTimeout: 0,
    onConnect: async (ctx) => {
      const connection = ctx.extra.connection;
      connection.ctx = ctx;
      awaitingInit.delete(ctx.extra.socket);
      connection.authorization = authorizationOf(ctx.connectionParams, ctx.extra.request);
      const auth = await o.tokens.authenticate(connection.authorization);
      // A refused token still connects: public streams work, viewer streams answer UNAUTHENTICATED (as over HTTP).
      if (!auth.viewer) return true;
      const exp = expiryOf(connection.authorization);
      // Beyond setTimeout's range (~24 days) Node would fire at once; re-verification at subscribe still applies.
      if (exp !== null && exp - Date.now() < MAX_TIMER_MS) {
        // The viewer's streams must not outlive the token; public ones (and the socket) go on, so
        // a client that renews its token resubscribes only what needed it (a close would be fatal
        // to graphql-ws clients and end the public streams too).
        connection.expiryTimer = setTimeout(() => connection.tokenExpired(), Math.max(0, exp - Date.now()));
        connection.expiryTimer.unref();
      }
      return true;
    },
    onClose: (ctx) => {
      awaitingInit.delete(ctx.extra.socket);
      ctx.extra.connection.closed();
      answered(ctx.extra.connection, null);
    },
    onSubscribe: async (ctx, id, payload: SubscribePayload) => {
      if (draining) return [new GraphQLError('The server is restarting; nothing was done. Please retry on a new connection.', { extensions: { code: 'TEMPORARILY_UNAVAILABLE', retryAfterSeconds: 1 } })];
      // The operation being subscribed is already counted in ctx.subscriptions.
      if (Object.keys(ctx.subscriptions).length + ctx.extra.connection.broadcastCount > o.maxSubscriptions) {
        return [new GraphQLError(`A connection may hold at most ${o.maxSubscriptions} subscriptions; complete one first.`, { extensions: { code: 'TOO_MANY_SUBSCRIPTIONS' } })];
      }
      const request = requestOf(ctx.extra.request, ctx.extra.connection.authorization);
      const { schema, execute, subscribe, contextFactory, parse, validate } = o.yoga.getEnveloped({
        ...ctx,
        req: ctx.extra.request,
        socket: ctx.extra.socket,
        params: payload,
        request,
      });
      let document: DocumentNode;
      try {
        document = parse(payload.query);
      } catch (err) {
        if (err instanceof GraphQLError) return [withCode(err, 'GRAPHQL_PARSE_FAILED')];
        throw err;
      }
      const errors = validate(schema, document);
      if (errors.length > 0) return errors.map((e: GraphQLError) => withCode(e, 'GRAPHQL_VALIDATION_FAILED'));
      // Valid and public: the next subscriptions with this text are broadcasts; this one is served as usual.
      if (!shareable.has(payload.query) && mayShare(payload) && isShareableSubscription(schema, document)) {
        if (shareable.size >= MAX_SHAREABLE_DOCUMENTS) shareable.delete(shareable.keys().next().value!);
        shareable.set(payload.query, { id: nextId++, query: payload.query, schema, document });
      }
      const roots: EnvelopedRoots = { execute, subscribe };
      if (ctx.extra.connection.authorization !== null && !isShareableSubscription(schema, document)) ctx.extra.connection.viewerBound.add(id);
      if (getOperationAST(document, payload.operationName)?.operation !== 'subscription') {
        const ids = answering.get(ctx.extra.connection) ?? new Set<string>();
        answering.set(ctx.extra.connection, ids.add(id));
      }
      return {
        schema,
        document,
        operationName: payload.operationName,
        variableValues: payload.variables,
        contextValue: await contextFactory(),
        rootValue: roots,
      };
    },
    onOperation: (ctx, id, _payload, _args, result) => {
      if (!ctx.extra.connection.viewerBound.delete(id) || !isAsyncIterable(result)) return undefined;
      return ctx.extra.connection.untilTokenExpires(result);
    },
    execute: (args) => (args.rootValue as EnvelopedRoots).execute(args),
    subscribe: (args) => (args.rootValue as EnvelopedRoots).subscribe(args),
    // Right after the last result was sent, before the `complete` (or `error`) frame goes out.
    onComplete: (ctx, id) => answered(ctx.extra.connection, id),
    onError: (ctx, id, _payload, errors) => {
      answered(ctx.extra.connection, id);
      log.debug({ errors: errors.map((e) => e.message) }, 'subscription refused');
      return errors.map((e) => withoutHttp(e).toJSON());
    },
    // `extensions.http` shapes an HTTP answer (Yoga leaves it out of HTTP bodies); a socket has none.
    onNext: (_ctx, _id, _payload, _args, result) =>
      result.errors?.length ? { ...result, errors: result.errors.map((e) => (e instanceof GraphQLError ? withoutHttp(e).toJSON() : e)) } : undefined,
  });

  /**
   * Takes a `subscribe` of a known shareable document (or a `complete` of a broadcast) before
   * graphql-ws sees it. Everything else, and anything not quite right, goes to graphql-ws, which
   * answers as the protocol says.
   */
  const intercept = (connection: Connection, text: string): boolean => {
    if (draining || (!text.includes('"subscribe"') && !text.includes('"complete"'))) return false;
    let message;
    try {
      message = parseMessage(text);
    } catch {
      return false;
    }
    if (message.type === MessageType.Complete) return connection.completeBroadcast(message.id);
    if (message.type !== MessageType.Subscribe) return false;
    const ctx = connection.ctx;
    if (!ctx?.acknowledged) return false;
    if (connection.hasBroadcast(message.id)) {
      connection.close(CloseCode.SubscriberAlreadyExists, `Subscriber for ${message.id} already exists`);
      return true;
    }
    const payload = message.payload;
    const entry = shareable.get(payload.query);
    if (!entry || message.id in ctx.subscriptions || !mayShare(payload)) return false;
    if (Object.keys(ctx.subscriptions).length + connection.broadcastCount + 1 > o.maxSubscriptions) return false;
    const variables = JSON.stringify(payload.variables ?? null);
    const key = `${entry.id}|${payload.operationName ?? ''}|${variables}`;
    let op = operations.get(key);
    if (!op) {
      if (operations.size >= MAX_SHARED_OPERATIONS) operations.delete(operations.keys().next().value!);
      op = { schema: entry.schema, document: entry.document, operationName: payload.operationName, variableValues: payload.variables, key };
      operations.set(key, op);
    }
    connection.openBroadcast(message.id, op, text, o.admitShared?.(op, ctx.extra.request, connection.authorization));
    return true;
  };

  const outbox = new Outbox(limits.maxBufferedBytes, (socket) => connections.get(socket)?.refuse(NOT_READING));
  const connections = new Map<WebSocket, Connection>();
  /** Connections that have not sent connection_init yet, with their deadline (one sweep instead of a timer each). */
  const awaitingInit = new Map<WebSocket, number>();
  wss.options.handleProtocols = handleProtocols;
  wss.on('error', (err) => {
    log.error({ err }, 'WebSocket server error; closing every socket');
    for (const client of wss.clients) client.close(CloseCode.InternalServerError, 'Internal server error');
  });
  wss.on('connection', (socket, request) => {
    const connection = new Connection(socket, request.socket, outbox, shared, intercept, limits, log);
    connections.set(socket, connection);
    socket.once('error', (err) => {
      log.warn({ err: err.message }, 'WebSocket error; closing the socket');
      socket.close(CloseCode.InternalServerError, 'Internal server error');
    });
    socket.on('ping', (data) => connection.pinged(data));
    socket.on('pong', () => connection.ponged());
    const closed = server.opened(connection, { socket, request, connection });
    awaitingInit.set(socket, Date.now() + CONNECTION_INIT_WAIT_MS);
    socket.once('close', (code, reason) => {
      connections.delete(socket);
      if (code === CloseCode.SubprotocolNotAcceptable && socket.protocol === DEPRECATED_GRAPHQL_WS_PROTOCOL) {
        log.debug('client used the deprecated subscriptions-transport-ws protocol');
      }
      void closed(code, String(reason));
    });
  });
  // One timer for every socket: a socket that did not answer the previous ping is gone.
  const heartbeat = setInterval(() => {
    for (const [socket, connection] of connections) {
      if (socket.readyState !== socket.OPEN) continue;
      if (connection.awaitingPong) {
        socket.terminate();
        continue;
      }
      connection.awaitingPong = true;
      socket.ping();
    }
  }, o.keepAliveMs);
  heartbeat.unref();
  const initSweep = setInterval(() => {
    const now = Date.now();
    for (const [socket, deadline] of awaitingInit) {
      if (deadline > now) continue;
      awaitingInit.delete(socket);
      socket.close(CloseCode.ConnectionInitialisationTimeout, 'Connection initialisation timeout');
    }
  }, CONNECTION_INIT_WAIT_MS / 6);
  initSweep.unref();

  return {
    close: async (graceMs = 0) => {
      draining = true;
      clearInterval(heartbeat);
      clearInterval(initSweep);
      if (answering.size > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, graceMs);
          allAnswered = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        await outbox.idle();
      }
      for (const client of wss.clients) client.close(1001, 'Going away');
      wss.removeAllListeners();
      await new Promise<void>((resolve, reject) => wss.close((err) => (err ? reject(err) : resolve())));
    },
    get connections() {
      return wss.clients.size;
    },
  };
}

/**
 * Text with NUL is refused by the regular path (hardening), so it never takes the shared one; nor
 * do documents and variables larger than any public subscription needs, since they are remembered.
 */
function mayShare(payload: SubscribePayload): boolean {
  const variables = JSON.stringify(payload.variables ?? null);
  return payload.query.length <= MAX_SHARED_QUERY_CHARS && variables.length <= MAX_SHARED_VARIABLES_CHARS && !payload.query.includes('\0') && !variables.includes('\\u0000');
}

/**
 * One socket: graphql-ws' view of it (protocol, send, close, onMessage) and its broadcasts. A
 * class, so its methods are not closures made per connection: with 10,000 connections every
 * per-connection allocation counts.
 */
class Connection implements GraphqlWsSocket {
  /** Frames the client may still send now (its token bucket), and when that was last worked out. */
  private tokens: number;
  private countedAt = performance.now();
  /** Closed for abuse: nothing more it sends is read or answered. */
  private refused = false;
  /** The connection_init payload's authorization, re-verified at every subscribe so expiry is honoured. */
  authorization: string | null = null;
  expiryTimer: NodeJS.Timeout | null = null;
  /** Subscriptions being started with the viewer's token that are not public: they end when it expires. */
  readonly viewerBound = new Set<string>();
  /** Stops each running viewer-bound subscription with UNAUTHENTICATED; set while any runs. */
  private readonly onTokenExpired = new Set<() => void>();
  /** A ping went out and its pong has not come back yet. */
  awaitingPong = false;
  /** graphql-ws' context, from connection_init on. */
  ctx: ServerContext | null = null;
  /** Broadcasts by subscription id; null while one is being opened. */
  private broadcasts: Map<string, Broadcast | null> | null = null;
  private deliver: ((data: string) => Promise<void>) | null = null;

  constructor(
    private readonly socket: WebSocket,
    private readonly tcp: Duplex,
    private readonly outbox: Outbox,
    readonly shared: SharedExecutor,
    private readonly intercept: (connection: Connection, text: string) => boolean,
    private readonly limits: SocketLimits,
    private readonly log: Logger,
  ) {
    this.tokens = limits.burst;
  }

  get protocol(): string {
    return this.socket.protocol;
  }

  get broadcastCount(): number {
    return this.broadcasts?.size ?? 0;
  }

  send(data: string): Promise<void> {
    return this.outbox.send(this.socket, this.tcp, data);
  }

  close(code: number, reason: string): void {
    this.socket.close(code, reason);
  }

  onMessage(deliver: (data: string) => Promise<void>): void {
    this.deliver = deliver;
    this.socket.on('message', (data) => {
      if (!this.admit()) return;
      const text = String(data);
      if (!this.intercept(this, text)) this.toGraphqlWs(text);
    });
  }

  /** A ping frame: answered while the client keeps within its budget and reads what it is sent. */
  pinged(data: Buffer): void {
    if (!this.admit() || this.socket.readyState !== this.socket.OPEN) return;
    if (this.socket.bufferedAmount > this.limits.maxBufferedBytes) this.refuse(NOT_READING);
    else this.socket.pong(data);
  }

  /** A pong frame (the answer to our heartbeat, or unsolicited). */
  ponged(): void {
    if (this.admit()) this.awaitingPong = false;
  }

  /**
   * Takes one frame from the client's budget; false (and the socket closed with 1008) once it has
   * sent more than the bucket holds. Messages, pings and pongs all cost one: each is read, parsed
   * and most are answered, and a client that sends them without reading the answers would make
   * the server keep every answer until it did.
   */
  private admit(): boolean {
    if (this.refused) return false;
    const now = performance.now();
    this.tokens = Math.min(this.limits.burst, this.tokens + (now - this.countedAt) * this.limits.perMs);
    this.countedAt = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    this.refuse(TOO_MANY_MESSAGES);
    return false;
  }

  /**
   * Closes the socket for abuse: nothing more it sends is handled, nothing more is written but the
   * close frame, and if the client does not complete the close handshake soon (one that does not
   * read never will) the connection is dropped, so whatever was queued for it is freed.
   */
  refuse(why: typeof TOO_MANY_MESSAGES | typeof NOT_READING): void {
    if (this.refused) return;
    this.refused = true;
    this.limits.closed?.inc({ reason: why === TOO_MANY_MESSAGES ? 'too-many-messages' : 'not-reading' });
    this.log.debug({ code: why.code }, `closing a WebSocket: ${why.reason}`);
    this.socket.close(why.code, why.reason);
    const socket = this.socket;
    setTimeout(() => socket.terminate(), POLICY_CLOSE_GRACE_MS).unref();
  }

  hasBroadcast(id: string): boolean {
    return this.broadcasts?.has(id) ?? false;
  }

  /** Opens a broadcast; if its source cannot be opened, graphql-ws gets the message and answers it. */
  openBroadcast(id: string, op: SharedOperation, text: string, admission?: Promise<readonly GraphQLError[] | null>): void {
    this.broadcasts ??= new Map();
    this.broadcasts.set(id, null);
    const opened = admission ? admission.then((refusal) => (refusal ? this.refuseBroadcast(id, refusal) : this.shared.open(op))) : this.shared.open(op);
    opened.then(
      (source) => {
        if (this.broadcasts?.get(id) !== null) {
          // Completed by the client, or the socket closed, while it was being opened.
          void source?.return?.();
          return;
        }
        // Only our own streams have a push mode; anything else is served the regular way.
        if (!(source instanceof LiveStream)) {
          void source?.return?.();
          this.broadcasts.delete(id);
          this.toGraphqlWs(text);
          return;
        }
        const broadcast = new Broadcast(this, id, source, op);
        this.broadcasts.set(id, broadcast);
        broadcast.start();
      },
      (err: unknown) => {
        if (this.broadcasts?.get(id) === null) this.broadcasts.delete(id);
        this.log.warn({ err }, 'opening a shared subscription failed; served the regular way');
        this.toGraphqlWs(text);
      },
    );
  }

  /** Refused before it opened (unless completed meanwhile): `next` with the errors, then `complete`. */
  private refuseBroadcast(id: string, errors: readonly GraphQLError[]): null {
    if (this.broadcasts?.get(id) !== null) return null;
    this.broadcasts.delete(id);
    void this.send(JSON.stringify({ id, type: MessageType.Next, payload: { data: null, errors: errors.map(withoutHttp) } }));
    void this.send(JSON.stringify({ id, type: MessageType.Complete }));
    return null;
  }

  /** A `complete` from the client: true if it named one of this connection's broadcasts. */
  completeBroadcast(id: string): boolean {
    if (!this.broadcasts?.has(id)) return false;
    const broadcast = this.broadcasts.get(id);
    this.broadcasts.delete(id);
    broadcast?.stop();
    return true;
  }

  /** The broadcast's source ended (the server is shutting down): tell the client, as graphql-ws would. */
  broadcastEnded(broadcast: Broadcast): void {
    if (this.broadcasts?.get(broadcast.id) !== broadcast) return;
    this.broadcasts.delete(broadcast.id);
    void this.send(JSON.stringify({ id: broadcast.id, type: MessageType.Complete }));
  }

  broadcastFailed(broadcast: Broadcast, err: unknown): void {
    if (this.broadcasts?.get(broadcast.id) !== broadcast) return;
    this.broadcasts.delete(broadcast.id);
    broadcast.stop();
    this.log.warn({ err }, 'shared subscription failed');
    void this.send(JSON.stringify({ id: broadcast.id, type: MessageType.Error, payload: [{ message: 'Internal server error', extensions: { code: 'INTERNAL_SERVER_ERROR' } }] }));
  }

  /**
   * The token of connection_init expired: later subscribes are anonymous (viewer streams answer
   * UNAUTHENTICATED, as over HTTP) and each running viewer-bound subscription ends with an error.
   */
  tokenExpired(): void {
    this.authorization = null;
    for (const stop of [...this.onTokenExpired]) stop();
  }

  /** The subscription's events until the token expires, then an UNAUTHENTICATED error (graphql-ws sends it as the subscription's `error`). */
  untilTokenExpires<T>(events: AsyncIterable<T>): AsyncGenerator<T> {
    const connection = this;
    return (async function* () {
      const iterator = events[Symbol.asyncIterator]();
      let stop!: () => void;
      const expired = new Promise<'expired'>((resolve) => (stop = () => resolve('expired')));
      connection.onTokenExpired.add(stop);
      try {
        if (connection.authorization === null) stop();
        for (;;) {
          const next = await Promise.race([iterator.next(), expired]);
          if (next === 'expired') throw new GraphQLError('Your token expired: subscribe again with a fresh one.', { extensions: { code: 'UNAUTHENTICATED' } });
          if (next.done) return;
          yield next.value;
        }
      } finally {
        connection.onTokenExpired.delete(stop);
        void iterator.return?.();
      }
    })();
  }

  /** The socket closed: every broadcast stops (graphql-ws stops its own subscriptions). */
  closed(): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    const broadcasts = this.broadcasts;
    this.broadcasts = null;
    for (const broadcast of broadcasts?.values() ?? []) broadcast?.stop();
  }

  private toGraphqlWs(text: string): void {
    // Not awaited: a subscription's handler only returns when the subscription ends.
    this.deliver?.(text).catch((err: unknown) => {
      this.log.error({ err }, 'WebSocket message handling failed; closing the socket');
      this.socket.close(CloseCode.InternalServerError, 'Internal server error');
    });
  }
}

/**
 * One subscriber of a shareable subscription: its own source stream (its first event is the
 * current state, then only news to it) in push mode, each event written as a `next` frame of the
 * shared payload. Like graphql-ws, it takes the next event only once the previous frame was
 * written, so a slow socket gets the latest state rather than a backlog.
 */
class Broadcast implements StreamSink<unknown> {
  private stopped = false;

  constructor(
    private readonly connection: Connection,
    readonly id: string,
    private readonly source: LiveStream<unknown>,
    private readonly op: SharedOperation,
  ) {}

  start(): void {
    this.source.attach(this);
  }

  value(event: unknown): void {
    this.connection.shared
      .payloadOf(this.op, event)
      .then((payload) => {
        if (this.stopped) return undefined;
        return this.connection.send(`{"id":${JSON.stringify(this.id)},"type":"next","payload":${payload}}`).then(() => this.source.ready());
      })
      .catch((err: unknown) => this.connection.broadcastFailed(this, err));
  }

  end(): void {
    if (!this.stopped) this.connection.broadcastEnded(this);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.source.end();
  }
}

/**
 * Frames waiting to be written, by socket, flushed once per turn of the event loop. An event
 * reaches all of a connection's subscriptions in the same turn (its status and its stock), so
 * their frames leave in one write instead of one system call each; with 10,000 connections the
 * system calls are most of a fan-out's cost. `send` resolves once the frame was written.
 */
class Outbox {
  private pending = new Map<WebSocket, { tcp: Duplex; frames: { data: string; done: (err?: Error) => void }[] }>();
  private scheduled = false;

  constructor(
    /** More than this already waiting to be written to a socket: its client does not read. */
    private readonly maxBufferedBytes: number,
    private readonly notReading: (socket: WebSocket) => void,
  ) {}

  send(socket: WebSocket, tcp: Duplex, data: string): Promise<void> {
    return new Promise((resolve, reject) => {
      if (socket.readyState !== socket.OPEN) return resolve();
      let entry = this.pending.get(socket);
      if (!entry) this.pending.set(socket, (entry = { tcp, frames: [] }));
      entry.frames.push({ data, done: (err) => (err ? reject(err) : resolve()) });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Resolves once the frames queued so far are handed to their sockets (which send them before a close frame). */
  idle(): Promise<void> {
    return this.scheduled ? new Promise((resolve) => setImmediate(resolve)) : Promise.resolve();
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = new Map();
    for (const [socket, { tcp, frames }] of batch) {
      // Frames are only written once the previous ones of their subscription were, so what piles
      // up here is answers to what the client keeps asking, or frames for one that stopped reading.
      if (socket.readyState === socket.OPEN && socket.bufferedAmount > this.maxBufferedBytes) this.notReading(socket);
      if (socket.readyState !== socket.OPEN) {
        for (const f of frames) f.done();
        continue;
      }
      // Nested corks count: ws' own cork/uncork per frame only writes once ours is lifted.
      if (frames.length > 1) tcp.cork();
      for (const f of frames) socket.send(f.data, (err) => f.done(err ?? undefined));
      if (frames.length > 1) tcp.uncork();
    }
  }
}

/** Per-socket abuse limits, shared by every connection of the server. */
interface SocketLimits {
  burst: number;
  /** Frames a millisecond the bucket refills by. */
  perMs: number;
  maxBufferedBytes: number;
  closed: Counter<'reason'> | null;
}

/**
 * Contexts of an anonymous caller for shared subscriptions: the one an HTTP request without a
 * token gets (services, no viewer), with loaders of its own, made only if a resolver asks, so no
 * cache outlives the event and opening a stream allocates none.
 */
function anonymousContexts(yoga: WebSocketOptions['yoga']): () => Promise<Context> {
  let base: Promise<Context> | null = null;
  return async () => {
    base ??= Promise.resolve(yoga.getEnveloped({ request: new Request(`http://localhost${yoga.graphqlEndpoint}`) }).contextFactory()).then((c) => c as unknown as Context, (err) => {
      base = null;
      throw err;
    });
    const b = await base;
    let loaders: Context['loaders'] | null = null;
    return Object.defineProperty({ ...b, viewer: null, authError: null }, 'loaders', { enumerable: true, get: () => (loaders ??= createLoaders(b.services)) }) as Context;
  };
}

/** Yoga's masking, as its maskedErrors option applies it to every other result (unexpected errors are logged, then hidden). */
function masked(error: GraphQLError, log: Logger): GraphQLError {
  const result = maskError(error, 'Unexpected error.') as GraphQLError;
  if (result !== error) log.error({ err: error }, 'unexpected error in a shared subscription event');
  return withoutHttp(result);
}

function withCode(e: GraphQLError, code: string): GraphQLError {
  return e.extensions?.code ? e : new GraphQLError(e.message, { nodes: e.nodes, source: e.source, positions: e.positions, extensions: { ...e.extensions, code } });
}

/** `{ authorization: "Bearer …" }` from connection_init (any key case), else the upgrade request's header. */
function authorizationOf(params: Record<string, unknown> | undefined, req: IncomingMessage): string | null {
  for (const [key, value] of Object.entries(params ?? {})) {
    if (key.toLowerCase() === 'authorization' && typeof value === 'string') return value;
  }
  const header = req.headers.authorization;
  return typeof header === 'string' ? header : null;
}

/**
 * The upgrade request as a Fetch Request carrying the connection's token, so Yoga's context
 * factory and plugins read a WebSocket operation exactly as they read an HTTP one. POST, as the
 * operation came in a message body: Yoga refuses a mutation on a GET request, and graphql-ws
 * clients may send mutations over the socket.
 */
function requestOf(req: IncomingMessage, authorization: string | null): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || /^(connection|upgrade|sec-websocket-|authorization$)/i.test(name)) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  if (authorization) headers.set('authorization', authorization);
  return new Request(`http://${req.headers.host ?? 'localhost'}${req.url ?? '/graphql'}`, { method: 'POST', headers });
}

/** The token's exp in ms; read only after the token was verified, so its payload is trusted. */
function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof (value as AsyncIterable<unknown> | null)?.[Symbol.asyncIterator] === 'function';
}

function expiryOf(authorization: string | null): number | null {
  const token = authorization?.trim().split(/\s+/)[1];
  if (!token) return null;
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'));
    return typeof payload?.exp === 'number' ? payload.exp * 1000 : null;
  } catch {
    return null;
  }
}
