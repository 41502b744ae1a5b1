import type { IncomingMessage } from 'node:http';
import { getOperationAST, type ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Logger } from 'pino';
import type { Context } from '../schema/context.js';
import type { Viewer } from '../services/auth.js';
import { rateLimited } from '../services/errors.js';
import type { LoginGuard } from '../services/login-guard.js';
import { argumentValue, AUTH_FIELDS, clientAddress, rootFields, type RootField } from './rate-limit.js';

const LOGIN_FIELDS: ReadonlySet<string> = new Set(AUTH_FIELDS);

/**
 * The failed-login limits of `login` and `register` (src/services/login-guard.ts), before anything
 * executes: every alias counts, one attempt per field, keyed by the `email` argument and the
 * client address (`clientAddress`: the socket's, or what TRUST_PROXY_HOPS trusted proxies
 * appended). A refused field answers RATE_LIMITED with `retryAfterSeconds` and nothing of the
 * operation runs. A field that answers data (a session) clears its (email, address) counter.
 * Admins are never limited. The per-address limit of all auth calls (RATE_LIMIT_AUTH_PER_IP) stays
 * with the general rate limiter, which runs first.
 */
export function loginLimit(opts: { guard: LoginGuard | null; trustProxyHops: number; log: Logger }): Plugin<Context> {
  const { guard, trustProxyHops, log } = opts;
  if (!guard) return {};

  return {
    onExecute({ args, setResultAndStopExecution }) {
      const operation = getOperationAST(args.document, args.operationName);
      if (operation?.operation !== 'mutation') return;
      const variables = (args.variableValues ?? {}) as Record<string, unknown>;
      const attempts = rootFields(operation.selectionSet, args.document, variables)
        .filter((f) => LOGIN_FIELDS.has(f.name))
        .flatMap((field) => {
          const email = argumentValue(field.node, 'email', variables);
          return typeof email === 'string' ? [{ field, email }] : [];
        });
      if (attempts.length === 0) return;
      const ctx = args.contextValue as { viewer?: Viewer | null; req?: IncomingMessage; extra?: { request?: IncomingMessage } };
      if (ctx.viewer?.role === 'admin') return;
      const address = clientAddress(ctx.req ?? ctx.extra?.request, trustProxyHops);

      // Sent in field order on one connection: Redis counts the aliases in the order they appear.
      return Promise.all(attempts.map((a) => guard.attempt(a.email, address))).then(
        (verdicts) => {
          const refused = verdicts.flatMap((v, i) => (v.allowed ? [] : [rateLimited(v.retryAfterMs, at(attempts[i].field))]));
          if (refused.length) {
            // data: null keeps it a field error with HTTP 200, not a request error.
            setResultAndStopExecution({ data: null, errors: refused });
            return undefined;
          }
          return {
            onExecuteDone({ result }: { result: ExecutionResult | AsyncIterable<unknown> }) {
              if (Symbol.asyncIterator in result) return;
              for (const { field, email } of attempts) {
                if (result.data?.[field.responseKey] == null) continue;
                guard.succeeded(email, address).catch((err: unknown) => log.warn({ err }, 'could not clear a failed-login counter'));
              }
            },
          };
        },
        (err: unknown) => {
          // Redis down: locking everyone out of login would not help.
          log.warn({ err }, 'login limiter unavailable; letting the call through');
          return undefined;
        },
      );
    },
  };
}

const at = (field: RootField) => ({ nodes: [field.node], path: [field.responseKey] });
