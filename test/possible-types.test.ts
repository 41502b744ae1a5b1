import { readFileSync } from 'node:fs';
import { plugin } from '@graphql-codegen/fragment-matcher';
import { getNamedType, isAbstractType } from 'graphql';
import { describe, expect, it } from 'vitest';
import codegen from '../codegen.js';
import { schema } from '../src/schema/index.js';

const FILE = 'src/generated/graphql/possible-types.json';

/**
 * src/generated/graphql/possible-types.json is what frontends give their normalized cache
 * (README, "For frontend developers"); `npm run codegen` writes it. A schema change that adds a
 * union member or an interface must come with the regenerated file, or clients silently lose
 * the fields of their `... on UserError` fragments.
 */
describe(FILE, () => {
  it('is what codegen.ts makes of the schema the server serves (npm run codegen)', async () => {
    const output = codegen.generates[FILE] as { plugins: string[]; config: Record<string, unknown> };
    expect(output.plugins).toEqual(['fragment-matcher']);
    const expected = await plugin(schema, [], output.config as never, { outputFile: FILE });
    expect(readFileSync(new URL(`../${FILE}`, import.meta.url), 'utf8').trim()).toBe(String(expected).trim());
  });

  it('names every union and interface of the schema with all their member types', () => {
    const { possibleTypes } = JSON.parse(readFileSync(new URL(`../${FILE}`, import.meta.url), 'utf8')) as { possibleTypes: Record<string, string[]> };
    const abstract = Object.values(schema.getTypeMap()).filter((t) => isAbstractType(t) && !t.name.startsWith('__'));
    expect(Object.keys(possibleTypes).sort()).toEqual(abstract.map((t) => t.name).sort());
    for (const type of abstract) {
      if (!isAbstractType(type)) continue;
      expect(possibleTypes[type.name]).toEqual(schema.getPossibleTypes(type).map((t) => getNamedType(t).name).sort());
    }
    expect(possibleTypes.UserError).toContain('Rejected');
  });
});
