import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/database.js';
import { badUserInput } from './errors.js';
import { isWellFormedId } from './validation.js';

export interface Page<T> {
  nodes: T[];
  hasNextPage: boolean;
  endCursor: string | null;
  cursorOf: (node: T) => string;
}

/**
 * Keyset cursors carry only the list's name and the unique id of the last node seen (opaque to
 * clients: base64url of `[list, id]`). The sort key is never round-tripped through JavaScript: the
 * query compares `(sort column, id)` with the cursor row's own values, read by PostgreSQL in the same
 * statement (see `afterRow`), so timestamps keep their microseconds and equal keys are ordered by id.
 * Rows of these lists are never deleted, so a cursor's row is always there to compare with.
 *
 * A cursor this server did not give out for that list — not base64url JSON, the wrong shape, another
 * list's, or naming no row of the list (another sale's order, somebody else's order, a made-up id) —
 * is the client's mistake: a GraphQL error BAD_USER_INPUT, never an empty page (which would read as
 * "the end") and never INTERNAL_SERVER_ERROR.
 */
export type CursorList = 'product' | 'sale' | 'order' | 'stockEvent';

export function encodeCursor(list: CursorList, id: string): string {
  return Buffer.from(JSON.stringify([list, id])).toString('base64url');
}

/** The id of the row the cursor names (not yet checked against the database), or null for no cursor. */
export function decodeCursor(list: CursorList, cursor: string | null | undefined): string | null {
  if (cursor == null) return null;
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw badCursor();
  }
  if (!Array.isArray(v) || v.length !== 2 || v[0] !== list || !isCursorId(list, v[1])) throw badCursor();
  return v[1];
}

/** PostgreSQL refuses NUL in text and numbers beyond bigint: such ids must not reach a query. */
function isCursorId(list: CursorList, id: unknown): id is string {
  if (list === 'stockEvent') return typeof id === 'string' && /^[1-9][0-9]{0,18}$/.test(id) && BigInt(id) <= 9223372036854775807n;
  return isWellFormedId(id) && !id.includes('\u0000');
}

export function badCursor() {
  return badUserInput('The cursor is not one this server gave out for this list.', 'after');
}

/** A list's table, and the columns that confine it (`{ sale_id: saleId }`): a cursor's row must lie inside. */
export interface CursorScope {
  table: 'products' | 'sales' | 'orders' | 'stock_events';
  where?: Record<string, string>;
}

function cursorRow(scope: CursorScope, id: string) {
  const conds = [sql`c.id = ${id}`, ...Object.entries(scope.where ?? {}).map(([col, v]) => sql`c.${sql.ref(col)} = ${v}`)];
  return sql`from ${sql.table(scope.table)} as c where ${sql.join(conds, sql` and `)}`;
}

/**
 * `(cols) > (the cursor row's cols)` (`<` with `desc`), the cursor row read by PostgreSQL in the
 * same statement. Each column is its own scalar subquery (an InitPlan), so the row comparison stays
 * an index condition. A cursor row outside the scope compares as NULL: the page comes back empty,
 * and `requireCursorRow` tells that apart from the end of the list.
 */
export function afterRow(scope: CursorScope, cols: readonly string[], id: string, desc = false): RawBuilder<boolean> {
  const theirs = cols.map((col) => sql`(select c.${sql.ref(col)} ${cursorRow(scope, id)})`);
  return sql<boolean>`(${sql.join(cols.map((col) => sql.ref(col)))}) ${sql.raw(desc ? '<' : '>')} (${sql.join(theirs)})`;
}

/** For a page after a cursor that came back empty: BAD_USER_INPUT unless the cursor's row is in the list. */
export async function requireCursorRow(db: Db, scope: CursorScope, id: string): Promise<void> {
  const { rows } = await sql`select 1 as one ${cursorRow(scope, id)}`.execute(db);
  if (rows.length === 0) throw badCursor();
}

/** `first` is 1..100 by contract. */
export function pageSize(first: number | null | undefined, fallback = 20): number {
  const n = first ?? fallback;
  if (!Number.isInteger(n) || n < 1 || n > 100) throw badUserInput('first must be between 1 and 100.', 'first');
  return n;
}

/** Builds a page from `size + 1` fetched rows. */
export function toPage<T>(rows: T[], size: number, list: CursorList, idOf: (row: T) => string): Page<T> {
  const nodes = rows.slice(0, size);
  const cursorOf = (n: T) => encodeCursor(list, idOf(n));
  const last = nodes[nodes.length - 1];
  return { nodes, hasNextPage: rows.length > size, endCursor: last ? cursorOf(last) : null, cursorOf };
}
