import type { IncomingMessage, Server } from 'node:http';
import { GraphQLError, type ExecutionArgs } from 'graphql';
import { CloseCode, type OperationResult, type SubscribePayload } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import type { YogaServerInstance } from 'graphql-yoga';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Context } from '../schema/context.js';
import type { TokenService } from '../services/auth.js';

interface ConnectionState {
  /** The connection_init payload's authorization, re-verified at every subscribe so expiry is honoured. */
  authorization: string | null;
  expiryTimer: NodeJS.Timeout | null;
}

/** graphql-ws' `Extra` for ws, plus this connection's auth state. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type ConnectionExtra = { socket: WebSocket; request: IncomingMessage; live?: ConnectionState };

/** Yoga's enveloped execute/subscribe for this operation, handed to graphql-ws through rootValue. */
interface EnvelopedRoots {
  execute: (args: ExecutionArgs) => OperationResult;
  subscribe: (args: ExecutionArgs) => OperationResult;
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
        const request = requestOf(ctx.extra.request, ctx.extra.live?.authorization ?? null);
        const { schema, execute, subscribe, contextFactory, parse, validate } = o.yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params: payload,
          request,
        });
        let document;
        try {
          document = parse(payload.query);
        } catch (err) {
          if (err instanceof GraphQLError) return [withCode(err, 'GRAPHQL_PARSE_FAILED')];
          throw err;
        }
        const errors = validate(schema, document);
        if (errors.length > 0) return errors.map((e: GraphQLError) => withCode(e, 'GRAPHQL_VALIDATION_FAILED'));
        const roots: EnvelopedRoots = { execute, subscribe };
        return {
          schema,
          document,
          operationName: payload.operationName,
          variableValues: payload.variables,
          contextValue: await contextFactory(),
          rootValue: roots,
        };
      },
      execute: (args) => (args.rootValue as EnvelopedRoots).execute(args),
      subscribe: (args) => (args.rootValue as EnvelopedRoots).subscribe(args),
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
