import type { BenchOptions } from './bench-options.js';
import type { GraphqlClient } from './graphql-client.js';
import type { Progress } from './progress.js';
import type { ServerProcess } from './server-process.js';

/** What every API scenario gets: the running server, a setup client, tokens and where the data lives. */
export interface BenchContext {
  opts: BenchOptions;
  server: ServerProcess;
  /** A small pool for setup and audit calls, apart from the load's own pool. */
  setup: GraphqlClient;
  admin: string;
  /** customer i's bearer token; subject `<namespace>-<i>`. */
  tokens: string[];
  databaseUrl: string;
  progress: Progress;
  /** Distinguishes the idempotency keys of runs that share customers. */
  runTag: string;
}

/**
 * Spreads attempts over customers in a scrambled order (a multiplicative hash), so one customer's
 * attempts are not neighbours and concurrent requests of one customer do happen, as in a storm.
 */
export function customerOf(attempt: number, customers: number): number {
  return Number((BigInt(attempt) * 2654435761n) % BigInt(customers));
}
