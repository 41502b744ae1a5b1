import type { Server, ServerOptions, ServerResponse } from 'node:http';
import { EnvelopArmor } from '@escape.tech/graphql-armor';
import { GraphQLError, Kind, NoSchemaIntrospectionCustomRule, visit, BREAK, type DocumentNode, type ValidationContext } from 'graphql';
import type { CORSOptions } from '@whatwg-node/server';
import type { Plugin, YogaServerOptions } from 'graphql-yoga';
import type { Registry } from 'prom-client';
import type { Config } from '../config.js';
import { limitConnectionsPerAddress } from './connection-limits.js';

/**
 * What a public endpoint needs beyond the schema: limits on the shape and size of what a client
 * may send, who may call from a browser, and headers that keep browsers from misusing answers.
 * Every limit comes from the configuration; the defaults leave the contract's operations far
 * inside them (the deepest is about 6 levels, the largest a few hundred tokens).
 */
export interface Hardening {
  /** Yoga plugins: document limits (graphql-armor), introspection switch, body size limit, parse errors as 400. */
  plugins: Plugin[];
  /** For Yoga, and for the fast lane's answers to the same browsers. */
  cors: CORSOptions | false;
  batching: YogaServerOptions<Record<string, unknown>, Record<string, unknown>>['batching'];
  /** Sets the security headers on any HTTP answer, GraphQL or not. */
  applyHeaders(res: ServerResponse): void;
  /** For `createServer`: Node-level timeouts, so a client trickling its headers or body cannot hold a socket forever. */
  serverOptions: ServerOptions;
  /** The per-address connection limit. */
  configureServer(server: Server, registry?: Registry): void;
}

export function createHardening(config: Config): Hardening {
  const development = config.NODE_ENV !== 'production';
  const introspection = config.INTROSPECTION ?? development;
  const headers = securityHeaders(config);
  return {
    plugins: [
      ...documentLimits(config, introspection),
      ...(introspection ? [] : [noIntrospection()]),
      requestParsing(config.HTTP_MAX_BODY_BYTES),
      noNulCharacters(),
    ],
    cors: corsOptions(config.CORS_ORIGINS ?? (development ? '*' : '')),
    // One request carrying many operations would multiply every per-request limit; refused unless asked for.
    batching: config.GRAPHQL_BATCH_LIMIT > 0 ? { limit: config.GRAPHQL_BATCH_LIMIT } : false,
    applyHeaders: (res) => {
      for (const [name, value] of headers) res.setHeader(name, value);
    },
    serverOptions: serverOptions(config),
    configureServer: (server, registry) => {
      limitConnectionsPerAddress(server, config.HTTP_MAX_CONNECTIONS_PER_ADDRESS ?? (config.TRUST_PROXY_HOPS > 0 ? 0 : 2048), registry);
    },
  };
}

/**
 * Node answers 408 and closes a connection whose headers (for a new connection: its first
 * request's) take longer than headersTimeout, or whose whole request, body included, takes longer
 * than requestTimeout; one that stalls mid-body is closed then, having never counted as in flight
 * (load-shedding.ts). Node looks every connectionsCheckingInterval: its default of 30 s would let
 * a stalled client stay up to 30 s past its timeout.
 */
function serverOptions(config: Config): ServerOptions {
  const headersTimeout = Math.min(config.HTTP_HEADERS_TIMEOUT_MS, config.HTTP_REQUEST_TIMEOUT_MS);
  return {
    requestTimeout: config.HTTP_REQUEST_TIMEOUT_MS,
    headersTimeout,
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(headersTimeout / 4))),
  };
}

/**
 * Armor's validation rules throw by default, which Yoga treats as an unexpected error and logs
 * with a stack: anyone could fill our error log. Reported as validation errors instead, they are
 * ordinary answers (GRAPHQL_VALIDATION_FAILED). The token limit acts in the parser and is already
 * an ordinary parse error.
 */
const asValidationError = {
  propagateOnRejection: false,
  onReject: [
    (ctx: ValidationContext | null, error: GraphQLError) =>
      ctx?.reportError(new GraphQLError(error.message.replace(/^Syntax Error: /, ''), { extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } })),
  ],
};

function documentLimits(config: Config, introspection: boolean): Plugin[] {
  const armor = new EnvelopArmor({
    maxDepth: { n: config.GRAPHQL_MAX_DEPTH, ignoreIntrospection: true, flattenFragments: true, ...asValidationError },
    costLimit: { maxCost: config.GRAPHQL_MAX_COST, ignoreIntrospection: true, ...asValidationError },
    maxAliases: { n: config.GRAPHQL_MAX_ALIASES, ...asValidationError },
    maxDirectives: { n: config.GRAPHQL_MAX_DIRECTIVES, ...asValidationError },
    maxTokens: { n: config.GRAPHQL_MAX_TOKENS },
    // "Did you mean …?" names fields a schema without introspection means to keep to itself.
    blockFieldSuggestion: { enabled: !introspection },
  });
  return armor.protect().plugins as Plugin[];
}

function noIntrospection(): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(NoSchemaIntrospectionCustomRule);
    },
  };
}

/** "*" allows any origin, "" none (same-origin only), else a comma-separated list. */
function corsOptions(origins: string): Hardening['cors'] {
  const list = origins.split(',').map((o) => o.trim()).filter(Boolean);
  if (list.length === 0) return false;
  // Bearer tokens, not cookies: credentialed cross-origin requests are never needed.
  return { origin: list.includes('*') ? '*' : list, methods: ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS'], credentials: false, maxAge: 600 };
}

function securityHeaders(config: Config): [string, string][] {
  if (!config.SECURITY_HEADERS) return [];
  const headers: [string, string][] = [
    ['x-content-type-options', 'nosniff'],
    ['referrer-policy', config.REFERRER_POLICY],
    // Only frame-ancestors: a fuller policy would have to allow GraphiQL's scripts and styles.
    ['content-security-policy', `frame-ancestors ${config.FRAME_ANCESTORS}`],
  ];
  if (config.FRAME_ANCESTORS.trim() === "'none'") headers.push(['x-frame-options', 'DENY']);
  if (config.HSTS_MAX_AGE_SECONDS > 0) headers.push(['strict-transport-security', `max-age=${config.HSTS_MAX_AGE_SECONDS}; includeSubDomains`]);
  return headers;
}

function tooLarge(maxBytes: number): GraphQLError {
  return new GraphQLError(`The request body is larger than ${maxBytes} bytes.`, {
    // Close the connection: whatever the client still sends is not worth reading.
    extensions: { code: 'PAYLOAD_TOO_LARGE', http: { status: 413, headers: { connection: 'close' } } },
  });
}

/**
 * Refuses bodies over `maxBytes` with 413 before they are parsed: at once when Content-Length
 * says so, else while reading a chunked body, so an endless stream costs at most `maxBytes`.
 * Also makes any parse failure a 400: Yoga's GET parser lets the SyntaxError of broken JSON in
 * `variables` or `extensions` escape, which would be a 500.
 */
export function requestParsing(maxBytes: number): Plugin {
  return {
    onRequestParse({ request, requestParser, setRequestParser, fetchAPI, endResponse }) {
      if (!requestParser) return;
      const hasBody = request.method !== 'GET' && request.method !== 'HEAD';
      const declared = request.headers.get('content-length');
      // Node reads exactly Content-Length bytes of body, so a declared length is a true bound.
      if (hasBody && declared !== null && Number(declared) > maxBytes) {
        endResponse(
          new fetchAPI.Response(JSON.stringify({ errors: [{ message: tooLarge(maxBytes).message, extensions: { code: 'PAYLOAD_TOO_LARGE' } }] }), {
            status: 413,
            headers: { 'content-type': 'application/json; charset=utf-8', connection: 'close' },
          }),
        );
        return;
      }
      const chunked = hasBody && declared === null;
      setRequestParser(async (req) => {
        const limited = chunked ? new fetchAPI.Request(req.url, { method: req.method, headers: req.headers, body: await readAtMost(req, maxBytes) }) : req;
        try {
          return await requestParser(limited);
        } catch (err) {
          if (err instanceof GraphQLError) throw err;
          throw new GraphQLError('The request could not be parsed: variables and extensions must be JSON objects.', {
            extensions: { code: 'BAD_REQUEST', http: { status: 400 } },
          });
        }
      });
    },
  };
}

async function readAtMost(request: Request, maxBytes: number): Promise<Uint8Array<ArrayBuffer>> {
  if (!request.body) return new Uint8Array();
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge(maxBytes);
    }
    chunks.push(value);
  }
  return new Uint8Array(Buffer.concat(chunks));
}

/**
 * Refuses text containing NUL (U+0000), in variables or in the document, before anything runs.
 * PostgreSQL cannot store it in text, so no valid input has one, and one that reached a query
 * failed as an unexpected error (500) wherever the services passed it on.
 */
export function noNulCharacters(): Plugin {
  const check = (document: DocumentNode, variables: unknown): GraphQLError | null => {
    const where = nulInVariables(variables) ?? nulInDocument(document);
    if (!where) return null;
    return new GraphQLError('Text may not contain the NUL character (U+0000).', { extensions: { code: 'BAD_USER_INPUT', field: where } });
  };
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const error = check(args.document, args.variableValues);
      if (error) setResultAndStopExecution({ data: null, errors: [error] });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const error = check(args.document, args.variableValues);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
  };
}

/** The path of the first string holding a NUL; iterative, since variables may nest thousands deep. */
function nulInVariables(variables: unknown): string | null {
  const stack: [unknown, string][] = [[variables, 'variables']];
  while (stack.length) {
    const [value, path] = stack.pop()!;
    if (typeof value === 'string') {
      if (value.includes('\0')) return path;
    } else if (Array.isArray(value)) {
      value.forEach((v, i) => stack.push([v, `${path}.${i}`]));
    } else if (value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) stack.push([v, `${path}.${k}`]);
    }
  }
  return null;
}

/** Documents come from Yoga's parse cache, so each one is walked once, not once per request. */
const nulInDocuments = new WeakMap<DocumentNode, string | null>();

function nulInDocument(document: DocumentNode): string | null {
  let found = nulInDocuments.get(document);
  if (found !== undefined) return found;
  found = nulInDocumentText(document);
  nulInDocuments.set(document, found);
  return found;
}

function nulInDocumentText(document: DocumentNode): string | null {
  let found: string | null = null;
  visit(document, {
    [Kind.STRING](node) {
      if (node.value.includes('\0')) {
        found = 'query';
        return BREAK;
      }
      return undefined;
    },
  });
  return found;
}
