import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { getOperationAST, type ExecutionResult, type GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Logger } from 'pino';

export const REQUEST_ID_HEADER = 'x-request-id';

/** What a proxy or client may hand us as a request id; anything else is replaced, never logged raw. */
const ACCEPTED_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The header's request id when it is one we accept, else null. */
export function acceptedRequestId(header: string | string[] | null | undefined): string | null {
  return typeof header === 'string' && ACCEPTED_ID.test(header) ? header : null;
}

/** Operations slower than this are logged at warn even when they succeed. */
const SLOW_MS = 1000;

/** Codes that mean something broke on our side rather than a business answer. */
const FAILURE_CODES = new Set(['INTERNAL_SERVER_ERROR', 'TEMPORARILY_UNAVAILABLE']);

/**
 * Where a context keeps its operation's logger: a property of the context itself, which dies with
 * it, rather than an entry per request in a WeakMap that every garbage collection must sweep.
 */
const LOGGER = Symbol('requestLogger');

/** The operation's child logger (requestId, operationName), for code that has the GraphQL context. */
export function requestLogger(context: object): Logger | undefined {
  return (context as { [LOGGER]?: () => Logger })[LOGGER]?.();
}

interface LoggedContext {
  request?: Request;
  req?: IncomingMessage;
}

/**
 * One child logger per GraphQL operation carrying `requestId` and `operationName`, and one line
 * when it ends: debug when it went well (LOG_LEVEL=debug gives an access log), info when it
 * answered with GraphQL errors, warn when it failed on our side or was slow. The request id comes
 * from the `x-request-id` header (a load balancer's or the client's) or is generated, and every
 * HTTP answer carries it back, so a client report, a proxy log and our lines can be joined.
 * Subscriptions over WebSocket take the upgrade request's id.
 */
export function requestLogging(log: Logger): Plugin {
  const ids = new WeakMap<Request, string>();

  const requestIdOf = (context: LoggedContext): string => {
    const fromRequest = context.request && ids.get(context.request);
    if (fromRequest) return fromRequest;
    const raw = context.request?.headers.get(REQUEST_ID_HEADER) ?? headerOf(context.req);
    return acceptedRequestId(raw) ?? randomUUID();
  };

  // pino children cost an object and a redaction setup each: made only when something is logged.
  const start = (context: LoggedContext & object, args: { document: Parameters<typeof getOperationAST>[0]; operationName?: string | null }) => {
    let child: Logger | undefined;
    const childLog = () =>
      (child ??= (() => {
        const operation = getOperationAST(args.document, args.operationName);
        return log.child({
          requestId: requestIdOf(context),
          operationName: operation?.name?.value ?? args.operationName ?? 'Anonymous',
          operationType: operation?.operation ?? 'unknown',
        });
      })());
    (context as { [LOGGER]?: () => Logger })[LOGGER] = childLog;
    return { childLog, startedAt: performance.now() };
  };

  return {
    onRequest({ request }) {
      const header = request.headers.get(REQUEST_ID_HEADER);
      ids.set(request, acceptedRequestId(header) ?? randomUUID());
    },
    onResponse({ request, response }) {
      const id = ids.get(request);
      if (id) response.headers.set(REQUEST_ID_HEADER, id);
    },
    onExecute({ args }) {
      const { childLog, startedAt } = start(args.contextValue as LoggedContext & object, args);
      return {
        onExecuteDone({ result }) {
          // Incremental delivery (@defer/@stream) is not used here; log its start like a plain result.
          if (isExecutionResult(result)) logDone(log, childLog, startedAt, result.errors);
          else childLog().debug('operation streaming');
        },
      };
    },
    onSubscribe({ args }) {
      const { childLog, startedAt } = start(args.contextValue as LoggedContext & object, args);
      const child = childLog();
      child.debug('subscription started');
      let events = 0;
      return {
        onSubscribeResult({ result }) {
          if (isExecutionResult(result)) {
            logDone(log, childLog, startedAt, result.errors);
            return undefined;
          }
          return {
            onNext: () => {
              events++;
            },
            onEnd: () => child.debug({ durationMs: Math.round(performance.now() - startedAt), events }, 'subscription ended'),
          };
        },
        onSubscribeError({ error }) {
          child.warn({ err: error instanceof Error ? error.message : String(error) }, 'subscription failed');
        },
      };
    },
  };
}

function logDone(base: Logger, childLog: () => Logger, startedAt: number, errors: readonly GraphQLError[] | undefined): void {
  const durationMs = Math.round((performance.now() - startedAt) * 10) / 10;
  if (!errors?.length) {
    if (durationMs >= SLOW_MS) childLog().warn({ durationMs }, 'slow operation');
    else if (base.isLevelEnabled('debug')) childLog().debug({ durationMs }, 'operation done');
    return;
  }
  const log = childLog();
  const codes = errors.map((e) => String(e.extensions?.code ?? 'INTERNAL_SERVER_ERROR'));
  const failed = codes.some((c) => FAILURE_CODES.has(c));
  // Messages of unexpected errors help whoever reads the log; business errors are told by their code.
  const detail = failed ? { errors: errors.slice(0, 3).map((e) => e.message) } : {};
  log[failed || durationMs >= SLOW_MS ? 'warn' : 'info']({ durationMs, codes: [...new Set(codes)], ...detail }, 'operation answered with errors');
}

function isExecutionResult(result: unknown): result is ExecutionResult {
  return typeof result === 'object' && result !== null && !(Symbol.asyncIterator in result);
}

function headerOf(req: IncomingMessage | undefined): string | null {
  const value = req?.headers[REQUEST_ID_HEADER];
  return (Array.isArray(value) ? value[0] : value) ?? null;
}
