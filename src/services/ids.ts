import { randomFillSync } from 'node:crypto';

const ID_BYTES = 12;
/** Random bytes drawn in batches: one call into OpenSSL per 512 ids instead of one per id. */
const pool = Buffer.alloc(ID_BYTES * 512);
let offset = pool.length;

/** A 16-character random id (96 bits), URL-safe, never containing '.' or '|'. */
export function newId(): string {
  if (offset === pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const id = pool.toString('base64url', offset, offset + ID_BYTES);
  offset += ID_BYTES;
  return id;
}

/**
 * Sale items and reservations carry their sale's id before the dot, so a request that names only
 * them reaches the sale's Redis slot without asking PostgreSQL. Still opaque to clients.
 */
export function newChildId(saleId: string): string {
  return `${saleId}.${newId()}`;
}

/** The sale id inside a child id, or null when the id cannot be one of ours. */
export function saleIdOf(childId: string): string | null {
  const dot = childId.indexOf('.');
  if (dot <= 0 || dot === childId.length - 1) return null;
  return childId.slice(0, dot);
}
