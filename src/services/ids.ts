import { randomBytes } from 'node:crypto';

/** A 16-character random id (96 bits), URL-safe, never containing '.' or '|'. */
export function newId(): string {
  return randomBytes(12).toString('base64url');
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
