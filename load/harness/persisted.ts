import { readFileSync } from 'node:fs';
import { persistedIdsByName, requestBodyFor } from './persisted-ids.js';

const ids = persistedIdsByName(
  JSON.parse(readFileSync(new URL('../../src/generated/graphql/persisted-documents.json', import.meta.url), 'utf8')) as Record<string, string>,
);

/** An operation's request body, by persisted id when codegen listed it (see persisted-ids.ts). */
export function requestBody(query: string, variables: Record<string, unknown>): string {
  return requestBodyFor(ids, query, variables);
}
