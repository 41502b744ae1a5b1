import { readFileSync } from 'node:fs';
import { usePersistedOperations } from '@graphql-yoga/plugin-persisted-operations';
import type { Plugin } from 'graphql-yoga';

/**
 * The trusted documents of our own clients (the tests, the load scripts, the k6 scenarios), by
 * id: `npm run codegen` writes them to `src/generated/graphql/persisted-documents.json` as
 * `sha256:<hex of the document text>`. A client may send the id instead of the text, either as
 * `documentId` (the GraphQL-over-HTTP draft) or as Apollo's automatic-persisted-query extension;
 * a request with `query` works as before, so third-party clients need nothing.
 */
export class PersistedOperations {
  private readonly byId: ReadonlyMap<string, string>;
  /**
   * Documents that are not trusted are accepted too. Automatic persisted queries (src/server/apq.ts)
   * register only while this holds: with trusted documents only they would be a way around it.
   */
  readonly allowsArbitraryOperations = true;

  constructor(documents: Record<string, string>) {
    const byId = new Map<string, string>();
    for (const [id, text] of Object.entries(documents)) {
      byId.set(id, text);
      // APQ sends the bare hex digest.
      byId.set(id.replace(/^sha256:/, ''), text);
    }
    this.byId = byId;
  }

  static generated(): PersistedOperations {
    const file = new URL('../generated/graphql/persisted-documents.json', import.meta.url);
    return new PersistedOperations(JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>);
  }

  /** The document text of an id, or undefined for an id nobody persisted. */
  get(id: string): string | undefined {
    return this.byId.get(id);
  }

  /** The id a request names, if any: `documentId`, else `extensions.persistedQuery.sha256Hash`. */
  static idOf(params: { documentId?: unknown; extensions?: unknown }): string | null {
    if (typeof params.documentId === 'string') return params.documentId;
    const apq = (params.extensions as { persistedQuery?: { version?: unknown; sha256Hash?: unknown } } | null | undefined)?.persistedQuery;
    return apq?.version === 1 && typeof apq.sha256Hash === 'string' ? apq.sha256Hash : null;
  }

  /**
   * Yoga resolves an id to its text before parsing. An unknown id answers
   * `PERSISTED_QUERY_NOT_FOUND` (Apollo clients then resend the full text); a request with neither
   * text nor id keeps Yoga's own "Must provide query string." answer.
   */
  plugin(): Plugin {
    return usePersistedOperations({
      allowArbitraryOperations: this.allowsArbitraryOperations,
      extractPersistedOperationId: (params) => PersistedOperations.idOf(params as { documentId?: unknown; extensions?: unknown }),
      getPersistedOperation: (id) => this.get(id) ?? null,
      customErrors: {
        notFound: { message: 'PersistedQueryNotFound', extensions: { code: 'PERSISTED_QUERY_NOT_FOUND', http: { status: 400 } } },
        keyNotFound: { message: 'Must provide query string.', extensions: { code: 'BAD_REQUEST', http: { spec: true, status: 400, headers: { Allow: 'GET, POST' } } } },
      },
    }) as Plugin;
  }
}
