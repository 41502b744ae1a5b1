import type { Answer } from './api.js';
import type { ChaosWorld } from './infra.js';
import type { InflightModel, Model, SaleState } from './model.js';
import type { Stall } from './proxy.js';

/** A purchase or confirmation whose commit reply a proxy holds (see StallCommit). */
export interface InflightReal {
  info: InflightModel;
  answer: Promise<Answer>;
  stall: Stall;
  sentState: SaleState;
  orderSeen: boolean;
}

/** Everything one run owns besides the model: its sale, customers, and the faults in progress. */
export interface Run {
  world: ChaosWorld;
  model: Model;
  index: number;
  saleId: string;
  itemIds: string[];
  customers: string[];
  tokens: string[];
  /** DUMPs of the sale's keys, oldest first: key → [pttl, payload]. */
  snapshots: Map<string, [number, Buffer]>[];
  inflight: InflightReal | null;
  pgCut: { since: number; minMs: number } | null;
  /** Whether INTERNAL_SERVER_ERROR answers are tolerated while PostgreSQL is cut (default: no). */
  lenientOutageErrors: boolean;
  trace: string[];
  startedAt: number;
}

/** An invariant or contract promise broken: the message says which, with the run's trace. */
export class Violation extends Error {
  constructor(readonly invariant: string, detail: string) {
    super(`[${invariant}] ${detail}`);
  }
}

export function note(run: Run, line: string): void {
  run.trace.push(`${((Date.now() - run.startedAt) / 1000).toFixed(2).padStart(6)}s ${line}`);
  if (run.trace.length > 400) run.trace.splice(0, run.trace.length - 400);
}

export function violation(run: Run, invariant: string, detail: string): never {
  note(run, `VIOLATION [${invariant}] ${detail}`);
  throw new Violation(invariant, detail);
}

export const instanceName = (i: number) => (i === 0 ? 'A' : 'B');

export function saleKeyBase(run: Run): string {
  return `${run.world.prefix}{sale:${run.saleId}}:`;
}

/** Every Redis key of the run's sale (all in its slot), sorted. */
export async function saleKeys(run: Run): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await run.world.redis.scan(cursor, 'MATCH', `${saleKeyBase(run)}*`, 'COUNT', 1000);
    cursor = next;
    out.push(...keys);
  } while (cursor !== '0');
  return [...new Set(out)].sort();
}

/** The kind of a sale key: `meta`, `stock`, ..., or `res:*` for the per-reservation hashes. */
export function keyKind(run: Run, key: string): string {
  const rest = key.slice(saleKeyBase(run).length);
  const colon = rest.indexOf(':');
  return colon < 0 ? rest : `${rest.slice(0, colon)}:*`;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
