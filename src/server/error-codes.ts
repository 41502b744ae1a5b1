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
