import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { GraphQLError, type DocumentNode, type ExecutionArgs, type GraphQLSchema } from 'graphql';
import { CloseCode, DEPRECATED_GRAPHQL_WS_PROTOCOL, handleProtocols, makeServer, type Context as GraphqlWsContext, type OperationResult, type SubscribePayload, type WebSocket as GraphqlWsSocket } from 'graphql-ws';
import type { YogaServerInstance } from 'graphql-yoga';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Context } from '../schema/context.js';
import { createLoaders } from '../schema/loaders.js';
import type { TokenService } from '../services/auth.js';
import { isShareableSubscription, SharedExecutor, type SharedOperation } from '../services/live/shared-execution.js';
import { maskError } from './error-codes.js';

interface ConnectionState {
  /** The connection_init payload's authorization, re-verified at every subscribe so expiry is honoured. */
  authorization: string | null;
  expiryTimer: NodeJS.Timeout | null;
  /** A ping went out and its pong has not come back yet. */
  awaitingPong: boolean;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** graphql-ws' `Extra` for ws, plus this connection's state. */
type ConnectionExtra = { socket: WebSocket; request: IncomingMessage; live: ConnectionState };

type ServerContext = GraphqlWsContext<Record<string, unknown> | undefined, ConnectionExtra>;

/** Yoga's enveloped execute/subscribe for this operation, handed to graphql-ws through rootValue. */
interface EnvelopedPlan {
  kind: 'enveloped';
  execute: (args: ExecutionArgs) => OperationResult;
  subscribe: (args: ExecutionArgs) => OperationResult;
}

/** A public subscription whose events are executed once for all its subscribers (see SharedExecutor). */
interface SharedPlan {
  kind: 'shared';
  op: SharedOperation;
  /** For the regular path, should the source not open. */
  ctx: ServerContext;
  payload: SubscribePayload;
}

type Plan = EnvelopedPlan | SharedPlan;

/** graphql-ws' default: a socket that sent no connection_init by then is closed with 4408. */
const CONNECTION_INIT_WAIT_MS = 3000;

/** Distinct shareable documents remembered; clients send a handful, so this only bounds abuse. */
const MAX_SHAREABLE_DOCUMENTS = 256;
/** Distinct (document, variables) remembered: the sales being watched, times a few documents. */
const MAX_SHARED_OPERATIONS = 10_000;

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
  log: Logger;
}

export interface WebSocketEndpoint {
  /** Closes every socket with 1001 "Going away" and stops accepting new ones. */
  close(): Promise<void>;
  readonly connections: number;
}

/**
 * GraphQL over WebSocket (graphql-transport-ws) on Yoga's endpoint and http.Server. Operations
 * run through `yoga.getEnveloped`, so they get the same context, plugins and error masking as
 * HTTP requests. The bearer token comes in the connection_init payload.
 */
export function attachWebSocket(o: WebSocketOptions): WebSocketEndpoint {
  const wss = new WebSocketServer({ server: o.server, path: o.yoga.graphqlEndpoint });
  const log = o.log;

  const shared = new SharedExecutor({ anonymousContext: anonymousContextOf(o.yoga), maskErrors: (errors) => errors.map((e) => masked(e, log)) });
  /** Shareable documents by query text, parsed and validated once (as Yoga caches them too). */
  const shareable = new Map<string, ShareableDocument>();
  /** One SharedOperation per document and variables, however many subscribe to it. */
  const operations = new Map<string, SharedOperation>();
  let nextId = 0;

  /** The regular path: this subscriber's own Yoga envelope, context and executions. */
  const prepare = async (ctx: ServerContext, payload: SubscribePayload) => {
    const request = requestOf(ctx.extra.request, ctx.extra.live?.authorization ?? null);
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
    return { schema, document, contextFactory, plan: { kind: 'enveloped', execute, subscribe } satisfies Plan as Plan };
  };
  const envelopedArgs = async (ctx: ServerContext, payload: SubscribePayload): Promise<GraphQLError[] | ExecutionArgs> => {
    const p = await prepare(ctx, payload);
    if (Array.isArray(p)) return p;
    return {
      schema: p.schema, document: p.document, operationName: payload.operationName, variableValues: payload.variables,
      contextValue: await p.contextFactory(), rootValue: p.plan,
    };
  };
  const sharedArgs = (entry: ShareableDocument, variables: string, ctx: ServerContext, payload: SubscribePayload): ExecutionArgs => {
    const key = `${entry.id}|${payload.operationName ?? ''}|${variables}`;
    let op = operations.get(key);
    if (!op) {
      if (operations.size >= MAX_SHARED_OPERATIONS) operations.delete(operations.keys().next().value!);
      op = { schema: entry.schema, document: entry.document, operationName: payload.operationName, variableValues: payload.variables, key };
      operations.set(key, op);
    }
    // graphql-ws keeps each subscription's message for its lifetime: let them all hold the one copy of the text.
    (payload as { query: string }).query = entry.query;
    return { schema: entry.schema, document: entry.document, operationName: payload.operationName, variableValues: payload.variables, contextValue: undefined, rootValue: { kind: 'shared', op, ctx, payload } satisfies Plan };
  };
  /** The source of a shared plan could not be opened (bad arguments, unknown sale): the regular path answers, with its error handling. */
  async function subscribeRegularly(plan: SharedPlan): Promise<OperationResult> {
    const args = await envelopedArgs(plan.ctx, plan.payload);
    if (Array.isArray(args)) return { errors: args };
    return (args.rootValue as EnvelopedPlan).subscribe(args);
  }

  /** Connections that have not sent connection_init yet, with their deadline (one sweep instead of a timer each). */
  const awaitingInit = new Map<WebSocket, number>();
  const server = makeServer<Record<string, unknown> | undefined, ConnectionExtra>({
    connectionInitWaitTimeout: 0,
    onConnect: async (ctx) => {
      awaitingInit.delete(ctx.extra.socket);
      const state = ctx.extra.live;
      state.authorization = authorizationOf(ctx.connectionParams, ctx.extra.request);
      const auth = await o.tokens.authenticate(state.authorization);
      // A refused token still connects: public streams work, viewer streams answer UNAUTHENTICATED (as over HTTP).
      if (!auth.viewer) return true;
      const exp = expiryOf(state.authorization);
      // Beyond setTimeout's range (~24 days) Node would fire at once; re-verification at subscribe still applies.
      if (exp !== null && exp - Date.now() < MAX_TIMER_MS) {
        // Long-lived sockets would otherwise outlive the token; the client reconnects with a fresh one.
        state.expiryTimer = setTimeout(() => ctx.extra.socket.close(CloseCode.Unauthorized, 'Token expired'), Math.max(0, exp - Date.now()));
        state.expiryTimer.unref();
      }
      return true;
    },
    onClose: (ctx) => {
      awaitingInit.delete(ctx.extra.socket);
      const timer = ctx.extra.live.expiryTimer;
      if (timer) clearTimeout(timer);
    },
    onSubscribe: async (ctx, _id, payload: SubscribePayload) => {
      // The operation being subscribed is already counted in ctx.subscriptions.
      if (Object.keys(ctx.subscriptions).length > o.maxSubscriptions) {
        return [new GraphQLError(`A connection may hold at most ${o.maxSubscriptions} subscriptions; complete one first.`, { extensions: { code: 'TOO_MANY_SUBSCRIPTIONS' } })];
      }
      const variables = JSON.stringify(payload.variables ?? null);
      // Text with NUL is refused by the regular path (hardening), so it never takes the shared one.
      const mayShare = !payload.query.includes('\0') && !variables.includes('\\u0000');
      const known = mayShare ? shareable.get(payload.query) : undefined;
      if (known) return sharedArgs(known, variables, ctx, payload);
      const p = await prepare(ctx, payload);
      if (Array.isArray(p)) return p;
      if (mayShare && isShareableSubscription(p.schema, p.document)) {
        if (shareable.size >= MAX_SHAREABLE_DOCUMENTS) shareable.delete(shareable.keys().next().value!);
        const entry = { id: nextId++, query: payload.query, schema: p.schema, document: p.document };
        shareable.set(payload.query, entry);
        return sharedArgs(entry, variables, ctx, payload);
      }
      return {
        schema: p.schema, document: p.document, operationName: payload.operationName, variableValues: payload.variables,
        contextValue: await p.contextFactory(), rootValue: p.plan,
      };
    },
    execute: (args) => {
      const plan = args.rootValue as Plan;
      if (plan.kind !== 'enveloped') throw new Error('shared plans are for subscriptions only');
      return plan.execute(args);
    },
    subscribe: async (args) => {
      const plan = args.rootValue as Plan;
      if (plan.kind === 'enveloped') return plan.subscribe(args);
      return (await shared.subscribe(plan.op)) ?? subscribeRegularly(plan);
    },
    onError: (_ctx, _id, _payload, errors) => {
      log.debug({ errors: errors.map((e) => e.message) }, 'subscription refused');
    },
  });

  const outbox = new Outbox();
  const states = new WeakMap<WebSocket, ConnectionState>();
  wss.options.handleProtocols = handleProtocols;
  wss.on('error', (err) => {
    log.error({ err }, 'WebSocket server error; closing every socket');
    for (const client of wss.clients) client.close(CloseCode.InternalServerError, 'Internal server error');
  });
  wss.on('connection', (socket, request) => {
    const connection = new Connection(socket, request.socket, outbox, log);
    states.set(socket, connection.state);
    socket.once('error', (err) => {
      log.warn({ err: err.message }, 'WebSocket error; closing the socket');
      socket.close(CloseCode.InternalServerError, 'Internal server error');
    });
    socket.on('pong', () => (connection.state.awaitingPong = false));
    const closed = server.opened(connection, { socket, request, live: connection.state });
    awaitingInit.set(socket, Date.now() + CONNECTION_INIT_WAIT_MS);
    socket.once('close', (code, reason) => {
      if (code === CloseCode.SubprotocolNotAcceptable && socket.protocol === DEPRECATED_GRAPHQL_WS_PROTOCOL) {
        log.debug('client used the deprecated subscriptions-transport-ws protocol');
      }
      void closed(code, String(reason));
    });
  });
  // One timer for every socket: a socket that did not answer the previous ping is gone.
  const heartbeat = setInterval(() => {
    for (const socket of wss.clients) {
      const state = states.get(socket);
      if (!state || socket.readyState !== socket.OPEN) continue;
      if (state.awaitingPong) {
        socket.terminate();
        continue;
      }
      state.awaitingPong = true;
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
    close: async () => {
      clearInterval(heartbeat);
      clearInterval(initSweep);
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
 * graphql-ws' view of one socket. A class, so its methods are not closures made per connection:
 * with 10,000 connections every per-connection allocation counts.
 */
class Connection implements GraphqlWsSocket {
  readonly state: ConnectionState = { authorization: null, expiryTimer: null, awaitingPong: false };

  constructor(
    private readonly socket: WebSocket,
    private readonly tcp: Duplex,
    private readonly outbox: Outbox,
    private readonly log: Logger,
  ) {}

  get protocol(): string {
    return this.socket.protocol;
  }

  send(data: string): Promise<void> {
    return this.outbox.send(this.socket, this.tcp, data);
  }

  close(code: number, reason: string): void {
    this.socket.close(code, reason);
  }

  onMessage(deliver: (data: string) => Promise<void>): void {
    this.socket.on('message', (data) => {
      // Not awaited: a subscription's handler only returns when the subscription ends.
      deliver(String(data)).catch((err: unknown) => {
        this.log.error({ err }, 'WebSocket message handling failed; closing the socket');
        this.socket.close(CloseCode.InternalServerError, 'Internal server error');
      });
    });
  }
}

/**
 * Frames waiting to be written, by socket, flushed once per turn of the event loop. An event
 * reaches all of a connection's subscriptions in the same turn (its status and its stock), so
 * their frames leave in one write instead of one system call each; with 10,000 connections the
 * system calls are most of a fan-out's cost. `send` resolves once the frame was written, as
 * graphql-ws expects (it pulls a subscription's next event only then, so a slow socket gets the
 * latest state rather than a backlog).
 */
class Outbox {
  private pending = new Map<WebSocket, { tcp: Duplex; frames: { data: string; done: (err?: Error) => void }[] }>();
  private scheduled = false;

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

  private flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = new Map();
    for (const [socket, { tcp, frames }] of batch) {
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

/**
 * A fresh anonymous caller's context for shared executions: the one an HTTP request without a
 * token gets (services, no viewer), with loaders of its own, made only if a resolver asks, so no
 * cache outlives the event and opening a stream allocates none.
 */
function anonymousContextOf(yoga: WebSocketOptions['yoga']): () => Promise<Context> {
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
  return result;
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
 * factory and plugins read a WebSocket operation exactly as they read an HTTP one.
 */
function requestOf(req: IncomingMessage, authorization: string | null): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || /^(connection|upgrade|sec-websocket-|authorization$)/i.test(name)) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  if (authorization) headers.set('authorization', authorization);
  return new Request(`http://${req.headers.host ?? 'localhost'}${req.url ?? '/graphql'}`, { headers });
}

/** The token's exp in ms; read only after the token was verified, so its payload is trusted. */
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
