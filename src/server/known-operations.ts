import { readFileSync } from 'node:fs';
import { Kind, parse } from 'graphql';
import { EXAMPLE_OPERATIONS } from './graphiql-examples.js';

/** The `operationName` label of every operation whose name the project does not know. */
export const OTHER_OPERATION = 'other';
/** The label of an operation without a name (as Yoga's Prometheus plugin spells it). */
export const ANONYMOUS_OPERATION = 'Anonymous';

/** Names of the named operations of a GraphQL document; none when it does not parse. */
function operationNames(document: string): string[] {
  try {
    return parse(document).definitions.flatMap((d) => (d.kind === Kind.OPERATION_DEFINITION && d.name ? [d.name.value] : []));
  } catch {
    return [];
  }
}

/** The live page's scripts hold their documents as string literals; operation names are capitalised there. */
const LIVE_PAGE_SCRIPTS = ['live.js', 'shop.js', 'api.js'];
const NAMED_OPERATION_IN_SCRIPT = /\b(?:query|mutation|subscription)\s+([A-Z][A-Za-z0-9_]*)\s*[({]/g;

/**
 * Every operation name our own clients send: the persisted operations codegen lists
 * (`src/generated/graphql/persisted-documents.json`: tests, load scripts, k6), GraphiQL's example
 * document and the live and shop pages. Read once at import, like the live page's files; a missing
 * file fails the start.
 */
function loadKnownOperations(): ReadonlySet<string> {
  const persisted = JSON.parse(readFileSync(new URL('../generated/graphql/persisted-documents.json', import.meta.url), 'utf8')) as Record<string, string>;
  const names = new Set<string>([...Object.values(persisted), EXAMPLE_OPERATIONS].flatMap(operationNames));
  for (const script of LIVE_PAGE_SCRIPTS) {
    const text = readFileSync(new URL(`../live-page/${script}`, import.meta.url), 'utf8');
    for (const m of text.matchAll(NAMED_OPERATION_IN_SCRIPT)) names.add(m[1]);
  }
  names.delete(OTHER_OPERATION);
  return names;
}

export const KNOWN_OPERATIONS: ReadonlySet<string> = loadKnownOperations();

/**
 * The `operationName` label for a client-chosen name: itself when the project knows it,
 * `Anonymous` for none, `other` for anything else — so /metrics holds a fixed number of series
 * whatever names clients make up.
 */
export function operationLabel(name: string | null | undefined): string {
  if (!name || name === ANONYMOUS_OPERATION) return ANONYMOUS_OPERATION;
  return KNOWN_OPERATIONS.has(name) ? name : OTHER_OPERATION;
}
