import { badUserInput, invalidInput, type Rejected } from './errors.js';

export const MAX_ID = 64;

/** A well-formed id is 1..64 characters; anything else is malformed input, not "not found". */
export function isWellFormedId(id: unknown): id is string {
  return typeof id === 'string' && id.length >= 1 && id.length <= MAX_ID;
}

export function checkIdOrReject(id: string, field: string): Rejected | null {
  return isWellFormedId(id) ? null : invalidInput(field, `${field} must be an id of 1 to ${MAX_ID} characters.`);
}

export function assertId(id: string, field: string): void {
  if (!isWellFormedId(id)) throw badUserInput(`${field} must be an id of 1 to ${MAX_ID} characters.`, field);
}
