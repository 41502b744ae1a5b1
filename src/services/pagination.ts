import { badUserInput } from './errors.js';

export interface Page<T> {
  nodes: T[];
  hasNextPage: boolean;
  endCursor: string | null;
  cursorOf: (node: T) => string;
}

/** Cursors are opaque: base64url of the sort key and id of the last node seen. */
export function encodeCursor(sortKey: string | number, id: string): string {
  return Buffer.from(JSON.stringify([sortKey, id])).toString('base64url');
}

export function decodeCursor(cursor: string | null | undefined): [string | number, string] | null {
  if (cursor == null) return null;
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(v) && v.length === 2 && typeof v[1] === 'string' && (typeof v[0] === 'string' || typeof v[0] === 'number')) return [v[0], v[1]];
  } catch {
    // fall through
  }
  throw badUserInput('The cursor is not one this server gave out.', 'after');
}

/** `first` is 1..100 by contract. */
export function pageSize(first: number | null | undefined, fallback = 20): number {
  const n = first ?? fallback;
  if (!Number.isInteger(n) || n < 1 || n > 100) throw badUserInput('first must be between 1 and 100.', 'first');
  return n;
}

/** Builds a page from `size + 1` fetched rows. */
export function toPage<T>(rows: T[], size: number, key: (row: T) => [string | number, string]): Page<T> {
  const nodes = rows.slice(0, size);
  const cursorOf = (n: T) => encodeCursor(...key(n));
  const last = nodes[nodes.length - 1];
  return { nodes, hasNextPage: rows.length > size, endCursor: last ? cursorOf(last) : null, cursorOf };
}
