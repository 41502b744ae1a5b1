import { readFileSync } from 'node:fs';

/** The persisted documents `npm run codegen` lists, by operation name. */
const idByName = new Map<string, string>();
const documents = JSON.parse(readFileSync(new URL('../../src/generated/graphql/persisted-documents.json', import.meta.url), 'utf8')) as Record<string, string>;
for (const [id, text] of Object.entries(documents)) {
  const name = /^(?:query|mutation|subscription)\s+(\w+)/.exec(text)?.[1];
  if (name) idByName.set(name, id);
}

/**
 * The JSON body of one operation as a production client sends it: the persisted id when codegen
 * persisted the operation, its text otherwise (a new operation before `npm run codegen`).
 */
export function requestBody(query: string, variables: Record<string, unknown>): string {
  const name = /^\s*(?:query|mutation|subscription)\s+(\w+)/.exec(query)?.[1];
  const documentId = name ? idByName.get(name) : undefined;
  return JSON.stringify(documentId ? { documentId, variables } : { query, variables });
}
