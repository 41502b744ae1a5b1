// Pure (no Node, no k6 APIs), so the Node harness and the k6 scripts share it: each reads
// `src/generated/graphql/persisted-documents.json` its own way and hands the map in.

const OPERATION_NAME = /^\s*(?:query|mutation|subscription)\s+(\w+)/;

/** Persisted ids by operation name, from codegen's `{ id: document text }` map. */
export function persistedIdsByName(documents: Record<string, string>): Map<string, string> {
  const ids = new Map<string, string>();
  for (const [id, text] of Object.entries(documents)) {
    const name = OPERATION_NAME.exec(text)?.[1];
    if (name) ids.set(name, id);
  }
  return ids;
}

/**
 * The JSON body of one operation as a production client sends it: the persisted id when codegen
 * persisted the operation, its text otherwise (a new operation before `npm run codegen`).
 */
export function requestBodyFor(ids: Map<string, string>, query: string, variables: Record<string, unknown>): string {
  const name = OPERATION_NAME.exec(query)?.[1];
  const documentId = name ? ids.get(name) : undefined;
  return JSON.stringify(documentId ? { documentId, variables } : { query, variables });
}
