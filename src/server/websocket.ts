import type { IncomingMessage, Server } from 'node:http';
import { GraphQLError, type DocumentNode, type ExecutionArgs, type GraphQLSchema } from 'graphql';
import { CloseCode, type Context as GraphqlWsContext, type OperationResult, type SubscribePayload } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
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
}

/** graphql-ws' `Extra` for ws, plus this connection's auth state. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type ConnectionExtra = { socket: WebSocket; request: IncomingMessage; live?: ConnectionState };

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
  fallback: () => Promise<OperationResult>;
}

type Plan = EnvelopedPlan | SharedPlan;

/** Distinct shareable documents remembered; clients send a handful, so this only bounds abuse. */
const MAX_SHAREABLE_DOCUMENTS = 256;

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
  const shareable = new Map<string, { id: number; schema: GraphQLSchema; document: DocumentNode }>();
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
  const sharedArgs = (entry: { id: number; schema: GraphQLSchema; document: DocumentNode }, variables: string, ctx: ServerContext, payload: SubscribePayload): ExecutionArgs => {
    const op: SharedOperation = {
      schema: entry.schema, document: entry.document, operationName: payload.operationName, variableValues: payload.variables,
      key: `${entry.id}|${payload.operationName ?? ''}|${variables}`,
    };
    // The source could not be opened (bad arguments, unknown sale): the regular path answers, with its error handling.
    const fallback = async (): Promise<OperationResult> => {
      const args = await envelopedArgs(ctx, payload);
      if (Array.isArray(args)) return { errors: args };
      return (args.rootValue as EnvelopedPlan).subscribe(args);
    };
    return { schema: entry.schema, document: entry.document, operationName: payload.operationName, variableValues: payload.variables, contextValue: undefined, rootValue: { kind: 'shared', op, fallback } satisfies Plan };
  };

  const handle = useServer<Record<string, unknown> | undefined, ConnectionExtra>(
    {
      onConnect: async (ctx) => {
        const authorization = authorizationOf(ctx.connectionParams, ctx.extra.request);
        const state: ConnectionState = { authorization, expiryTimer: null };
        ctx.extra.live = state;
        const auth = await o.tokens.authenticate(authorization);
        // A refused token still connects: public streams work, viewer streams answer UNAUTHENTICATED (as over HTTP).
        if (!auth.viewer) return true;
        const exp = expiryOf(authorization);
        // Beyond setTimeout's range (~24 days) Node would fire at once; re-verification at subscribe still applies.
        if (exp !== null && exp - Date.now() < MAX_TIMER_MS) {
          // Long-lived sockets would otherwise outlive the token; the client reconnects with a fresh one.
          state.expiryTimer = setTimeout(() => ctx.extra.socket.close(CloseCode.Unauthorized, 'Token expired'), Math.max(0, exp - Date.now()));
          state.expiryTimer.unref();
        }
        return true;
      },
      onClose: (ctx) => {
        const timer = ctx.extra.live?.expiryTimer;
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
          const entry = { id: nextId++, schema: p.schema, document: p.document };
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
        return (await shared.subscribe(plan.op)) ?? plan.fallback();
      },
      onError: (_ctx, _id, _payload, errors) => {
        log.debug({ errors: errors.map((e) => e.message) }, 'subscription refused');
      },
    },
    wss,
    o.keepAliveMs,
  );

  return {
    close: async () => {
      await handle.dispose();
    },
    get connections() {
      return wss.clients.size;
    },
  };
}

/**
 * A fresh anonymous caller's context for shared executions: the one an HTTP request without a
 * token gets (services, no viewer), with loaders of its own so no cache outlives the event.
 */
function anonymousContextOf(yoga: WebSocketOptions['yoga']): () => Promise<Context> {
  let base: Promise<Context> | null = null;
  return async () => {
    base ??= Promise.resolve(yoga.getEnveloped({ request: new Request(`http://localhost${yoga.graphqlEndpoint}`) }).contextFactory()).then((c) => c as unknown as Context, (err) => {
      base = null;
      throw err;
    });
    const b = await base;
    return { ...b, viewer: null, authError: null, loaders: createLoaders(b.services) };
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
