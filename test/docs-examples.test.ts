import { readFileSync } from 'node:fs';
import { buildSchema, getVariableValues, Kind, parse, validate, type GraphQLObjectType, type OperationDefinitionNode } from 'graphql';
import { describe, expect, it } from 'vitest';
import { schema as served } from '../src/schema/index.js';

/**
 * docs/admin-guide.md shows every admin operation as a GraphiQL example: a ```graphql block,
 * optionally followed by a ```json block of its variables. Each must be a valid operation against
 * the printed schema (schema.graphql, kept equal to the served one by test/contract.test.ts), its
 * variables must coerce, and every field the schema guards with `authScopes: { admin: true }`
 * must have an example, so the guide cannot rot when the schema changes.
 */
const GUIDE = 'docs/admin-guide.md';
const printed = buildSchema(readFileSync(new URL('../schema.graphql', import.meta.url), 'utf8'));

interface Example { line: number; source: string; variables: Record<string, unknown> | undefined }

function examples(markdown: string): Example[] {
  const fences = [...markdown.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({
    lang: m[1],
    body: m[2],
    line: markdown.slice(0, m.index).split('\n').length,
  }));
  const out: Example[] = [];
  fences.forEach((f, i) => {
    if (f.lang !== 'graphql') return;
    const next = fences[i + 1];
    out.push({ line: f.line, source: f.body, variables: next?.lang === 'json' ? (JSON.parse(next.body) as Record<string, unknown>) : undefined });
  });
  return out;
}

const list = examples(readFileSync(new URL(`../${GUIDE}`, import.meta.url), 'utf8'));

describe(GUIDE, () => {
  it('has examples', () => {
    expect(list.length).toBeGreaterThan(10);
  });

  for (const ex of list) {
    it(`line ${ex.line}: a valid operation against schema.graphql, with variables that coerce`, () => {
      const doc = parse(ex.source);
      expect(validate(printed, doc).map((e) => e.message)).toEqual([]);
      const ops = doc.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
      expect(ops).toHaveLength(1);
      const op = ops[0]!;
      expect(op.name?.value, 'named, as GraphiQL tabs and the metrics want').toBeTruthy();
      const defs = op.variableDefinitions ?? [];
      if (defs.length > 0) expect(ex.variables, 'a ```json block of variables follows').toBeDefined();
      const coerced = getVariableValues(printed, defs, ex.variables ?? {});
      expect(coerced.errors?.map((e) => e.message) ?? []).toEqual([]);
      expect(Object.keys(ex.variables ?? {}).filter((k) => !defs.some((d) => d.variable.name.value === k)), 'no unused variables').toEqual([]);
    });
  }

  it('shows every admin-only field of the schema the server serves', () => {
    const roots = [served.getQueryType(), served.getMutationType(), served.getSubscriptionType()].filter((t): t is GraphQLObjectType => !!t);
    const adminFields = roots.flatMap((type) =>
      Object.values(type.getFields())
        .filter((f) => (f.extensions as { pothosOptions?: { authScopes?: { admin?: boolean } } }).pothosOptions?.authScopes?.admin === true)
        .map((f) => `${type.name}.${f.name}`),
    );
    expect(adminFields.length).toBeGreaterThanOrEqual(11);
    const shown = new Set<string>();
    for (const ex of list) {
      for (const d of parse(ex.source).definitions) {
        if (d.kind !== Kind.OPERATION_DEFINITION) continue;
        const root = d.operation === 'query' ? 'Query' : d.operation === 'mutation' ? 'Mutation' : 'Subscription';
        for (const s of d.selectionSet.selections) if (s.kind === Kind.FIELD) shown.add(`${root}.${s.name.value}`);
      }
    }
    expect(adminFields.filter((f) => !shown.has(f))).toEqual([]);
  });
});
