import { readFileSync } from 'node:fs';
import { buildSchema, findBreakingChanges, findDangerousChanges, printSchema } from 'graphql';
import { describe, expect, it } from 'vitest';
import { schema } from '../src/schema/index.js';

const contract = buildSchema(readFileSync(new URL('../contract/schema.graphql', import.meta.url), 'utf8'));

/**
 * Parts of the contract that later issues deliver. Each entry must still be missing (so the
 * list shrinks as they land) and nothing else may be: the list ends empty.
 */
const NOT_YET_DELIVERED: string[] = [];

describe('the printed schema against contract/schema.graphql', () => {
  it('has no breaking change from the contract beyond the allow-list', () => {
    const breaking = findBreakingChanges(contract, schema).map((c) => c.description);
    expect(breaking.filter((d) => !NOT_YET_DELIVERED.includes(d))).toEqual([]);
  });

  it('lists in the allow-list only what is still missing', () => {
    const breaking = new Set(findBreakingChanges(contract, schema).map((c) => c.description));
    expect(NOT_YET_DELIVERED.filter((d) => !breaking.has(d))).toEqual([]);
  });

  it('keeps every default value and enum value of the contract', () => {
    expect(findDangerousChanges(contract, schema).map((c) => c.description)).toEqual([]);
  });

  it('is checked in as schema.graphql, up to date (npm run schema:print)', () => {
    const printed = readFileSync(new URL('../schema.graphql', import.meta.url), 'utf8');
    expect(printed).toBe(`${printSchema(schema)}\n`);
  });

  it('matches the contract copy in contract/ with the shared one when it is beside the repo', () => {
    let shared: string;
    try {
      shared = readFileSync(new URL('../../shared/contract/schema.graphql', import.meta.url), 'utf8');
    } catch {
      return; // a user's clone has no ../shared; the copy in contract/ is the contract then
    }
    expect(readFileSync(new URL('../contract/schema.graphql', import.meta.url), 'utf8')).toBe(shared);
    expect(readFileSync(new URL('../contract/CONTRACT.md', import.meta.url), 'utf8')).toBe(readFileSync(new URL('../../shared/contract/CONTRACT.md', import.meta.url), 'utf8'));
  });
});
