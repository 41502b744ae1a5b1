import { GraphQLError, type GraphQLErrorOptions } from 'graphql';

export const ERROR_CODES = [
  'SOLD_OUT', 'LIMIT_EXCEEDED', 'SALE_NOT_STARTED', 'SALE_ENDED', 'SALE_PAUSED', 'SALE_CANCELLED',
  'NOT_ADMITTED', 'RESERVATION_NOT_FOUND', 'RESERVATION_EXPIRED', 'RESERVATION_NOT_HELD',
  'ORDER_NOT_CANCELLABLE', 'IDEMPOTENCY_KEY_REUSED', 'ALREADY_ON_WAITLIST', 'NOT_ON_WAITLIST',
  'WAITLIST_CLOSED', 'NO_WAITING_ROOM', 'TEMPORARILY_UNAVAILABLE', 'NOT_FOUND', 'INVALID_INPUT',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** A business outcome that is not a success: returned as a value, never thrown. */
export interface Rejected {
  readonly kind: 'Rejected';
  code: ErrorCode;
  message: string;
  field?: string | null;
  retryAfterSeconds?: number | null;
  available?: number | null;
  waitlistOpen: boolean;
}

const MESSAGES: Record<ErrorCode, string> = {
  SOLD_OUT: 'Sorry, this item is sold out.',
  LIMIT_EXCEEDED: 'You already hold or bought as many of this item as one customer may.',
  SALE_NOT_STARTED: 'The sale has not started yet.',
  SALE_ENDED: 'The sale has ended.',
  SALE_PAUSED: 'The sale is paused for the moment; please try again shortly.',
  SALE_CANCELLED: 'The sale was cancelled.',
  NOT_ADMITTED: 'This sale has a waiting room: join the queue and use your admission token.',
  RESERVATION_NOT_FOUND: 'No such reservation of yours.',
  RESERVATION_EXPIRED: 'Your reservation expired before it was confirmed; its units went back on sale.',
  RESERVATION_NOT_HELD: 'This reservation is no longer held.',
  ORDER_NOT_CANCELLABLE: 'This order can no longer be cancelled.',
  IDEMPOTENCY_KEY_REUSED: 'This idempotency key was already used for a different request.',
  ALREADY_ON_WAITLIST: 'You are already on the waitlist.',
  NOT_ON_WAITLIST: 'You are not on the waitlist.',
  WAITLIST_CLOSED: 'Stock is available: buy it instead of joining the waitlist.',
  NO_WAITING_ROOM: 'This sale has no waiting room.',
  TEMPORARILY_UNAVAILABLE: 'We could not complete this right now; nothing was charged or held. Please retry shortly.',
  NOT_FOUND: 'Nothing was found with that id.',
  INVALID_INPUT: 'The request is not valid.',
};

export function rejected(code: ErrorCode, extra: Partial<Omit<Rejected, 'kind' | 'code'>> = {}): Rejected {
  return { kind: 'Rejected', code, message: extra.message ?? MESSAGES[code], waitlistOpen: false, ...extra };
}

export function invalidInput(field: string, message: string): Rejected {
  return rejected('INVALID_INPUT', { field, message });
}

export function isRejected(v: unknown): v is Rejected {
  return typeof v === 'object' && v !== null && (v as Rejected).kind === 'Rejected';
}

/** GraphQL errors with the contract's `extensions.code`, for fields that do not return a union. */
export function badUserInput(message: string, field?: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT', ...(field ? { field } : {}) } });
}
export function unauthenticated(message = 'Sign in to do this.'): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'UNAUTHENTICATED', http: { status: 200 } } });
}
export function forbidden(message = 'This is for admins only.'): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'FORBIDDEN' } });
}
/**
 * Over a rate limit: by the contract a GraphQL error (HTTP 200, `retryAfterSeconds`, and a
 * Retry-After header), not a Rejected; refused calls count, so waiting is the only way back.
 */
export function rateLimited(retryAfterMs: number, at: { nodes?: GraphQLErrorOptions['nodes']; path?: GraphQLErrorOptions['path'] } = {}): GraphQLError {
  const retryAfterSeconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return new GraphQLError(`Too many requests; please try again in ${retryAfterSeconds} s.`, {
    ...at,
    extensions: { code: 'RATE_LIMITED', retryAfterSeconds, http: { headers: { 'Retry-After': String(retryAfterSeconds) } } },
  });
}
export function notFound(what: string): GraphQLError {
  return new GraphQLError(`No ${what} has that id.`, { extensions: { code: 'NOT_FOUND' } });
}

/** An infrastructure fault the caller may retry: PostgreSQL down, live stock being rebuilt. */
export class UnavailableError extends Error {
  constructor(message: string, readonly retryAfterSeconds = 2) {
    super(message);
  }
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ECONNABORTED']);
const CONNECTION_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|Connection is closed|Stream isn't writeable|MaxRetriesPerRequest|Reached the max retries per request|connect ECONNREFUSED|Client has encountered a connection error/i;

/**
 * True when `err` says PostgreSQL or Redis could not be reached (refused, cut, timed out, shut
 * down): nothing the caller did wrong, and worth a retry. SQLSTATE class 08 is a connection
 * exception; 57P01–57P03 an administrator or crash shutdown; 53300 too many connections.
 */
export function isDependencyUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; name?: unknown; message?: unknown };
  if (typeof e?.code === 'string' && (CONNECTION_CODES.has(e.code) || /^08/.test(e.code) || /^57P0[123]$/.test(e.code) || e.code === '53300')) return true;
  if (e?.name === 'MaxRetriesPerRequestError') return true;
  return CONNECTION_MESSAGES.test(String(e?.message ?? ''));
}
