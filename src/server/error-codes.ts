import { GraphQLError } from 'graphql';
import { maskError as yogaMaskError, type Plugin } from 'graphql-yoga';
import { isDependencyUnavailable, UnavailableError } from '../services/errors.js';

/**
 * Gives every error the contract's `extensions.code`: malformed documents and variables are
 * BAD_USER_INPUT, an unavailable dependency (an UnavailableError, or PostgreSQL or Redis refusing,
 * cutting or timing out a connection) is TEMPORARILY_UNAVAILABLE (with retryAfterSeconds),
 * anything unexpected is masked (no message, no stack) as INTERNAL_SERVER_ERROR.
 * Expected errors come back as the very same object: Yoga logs, as unexpected, every error that
 * masking replaced.
 */
export function maskError(error: unknown, message: string, isDev?: boolean): Error {
  const original = error instanceof GraphQLError ? error.originalError : error;
  if (original instanceof UnavailableError || isDependencyUnavailable(original)) {
    return new GraphQLError('A dependency is unavailable for a moment; please retry.', {
      extensions: { code: 'TEMPORARILY_UNAVAILABLE', retryAfterSeconds: original instanceof UnavailableError ? original.retryAfterSeconds : 2 },
    });
  }
  if (error instanceof GraphQLError && !error.originalError) {
    if (!error.extensions.code) (error.extensions as Record<string, unknown>).code = 'BAD_USER_INPUT';
    return error;
  }
  // A resolver's own GraphQLError (its located copy carries the same extensions and the path).
  if (error instanceof GraphQLError && error.originalError instanceof GraphQLError) return error;
  return yogaMaskError(error, message, isDev);
}

function withCode(e: GraphQLError, code: string): GraphQLError {
  return e.extensions?.code ? e : new GraphQLError(e.message, { nodes: e.nodes, source: e.source, positions: e.positions, path: e.path, extensions: { ...e.extensions, code } });
}

/** Validation and variable-coercion errors skip maskError in Yoga; this gives them a code too. */
export function errorCodes(): Plugin {
  return {
    onExecute() {
      return {
        onExecuteDone({ result, setResult }) {
          // Errors without data come from coercing variables, before any resolver ran.
          if (!('errors' in result) || !result.errors?.length || (result as { data?: unknown }).data !== undefined) return;
          setResult({ ...result, errors: result.errors.map((e) => withCode(e, 'BAD_USER_INPUT')) });
        },
      };
    },
    onValidate() {
      return ({ result, setResult }) => {
        if (result.length === 0) return;
        setResult(result.map((e) => withCode(e, 'GRAPHQL_VALIDATION_FAILED')));
      };
    },
  };
}

/**
 * The error without `extensions.http`, which tells Yoga the HTTP status and headers of an answer:
 * Yoga leaves it out of HTTP bodies, but over a WebSocket there is no HTTP answer to shape, and
 * graphql-ws would send it as it is. The same object when it has none.
 */
export function withoutHttp(e: GraphQLError): GraphQLError {
  if (!e.extensions || !('http' in e.extensions)) return e;
  const { http: _http, ...extensions } = e.extensions;
  return new GraphQLError(e.message, { nodes: e.nodes, source: e.source, positions: e.positions, path: e.path, originalError: e.originalError, extensions });
}

/** What Yoga answers 406 and 415 with (an empty body), as a GraphQL-over-HTTP error body. */
const EMPTY_ERROR_ANSWERS: Readonly<Record<number, { message: string; code: string }>> = {
  406: { message: 'None of the media types in the Accept header can carry this answer; accept application/graphql-response+json or application/json (text/event-stream or multipart/mixed for a subscription).', code: 'NOT_ACCEPTABLE' },
  415: { message: 'Unsupported Content-Type: send application/json (or a GET with the operation in the query string).', code: 'UNSUPPORTED_MEDIA_TYPE' },
};

/** Gives Yoga's bodiless 406 and 415 answers a JSON body: `{"errors":[{"message":…,"extensions":{"code":…}}]}`. */
export function errorBodies(): Plugin {
  return {
    onResponse({ response, setResponse, fetchAPI }) {
      const answer = EMPTY_ERROR_ANSWERS[response.status];
      // Yoga's own are bodiless, so typeless; anything with a type already says something.
      if (!answer || response.headers.get('content-type') !== null) return;
      const headers = new fetchAPI.Headers(response.headers);
      headers.delete('content-length');
      headers.set('content-type', 'application/json; charset=utf-8');
      const body = JSON.stringify({ errors: [{ message: answer.message, extensions: { code: answer.code } }] });
      setResponse(new fetchAPI.Response(body, { status: response.status, statusText: response.statusText, headers }));
    },
  };
}
