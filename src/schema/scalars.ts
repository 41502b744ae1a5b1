import { GraphQLError, Kind } from 'graphql';
import { builder } from './builder.js';

function parseDate(value: unknown): Date {
  if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(value)) {
    const d = new Date(value);
    if (!Number.isNaN(d.getTime())) return d;
  }
  throw new GraphQLError('DateTime must be an ISO-8601 string such as "2026-11-29T00:00:00.000Z".', { extensions: { code: 'BAD_USER_INPUT' } });
}

builder.scalarType('DateTime', {
  serialize: (v) => new Date(v).toISOString(),
  parseValue: parseDate,
  parseLiteral: (ast) => parseDate(ast.kind === Kind.STRING ? ast.value : undefined),
});

function parseBig(value: unknown): bigint {
  if ((typeof value === 'string' && /^-?\d{1,30}$/.test(value)) || (typeof value === 'number' && Number.isSafeInteger(value))) return BigInt(value);
  throw new GraphQLError('BigInt must be a whole number as a decimal string.', { extensions: { code: 'BAD_USER_INPUT' } });
}

builder.scalarType('BigInt', {
  serialize: (v) => String(v),
  parseValue: parseBig,
  parseLiteral: (ast) => parseBig(ast.kind === Kind.STRING || ast.kind === Kind.INT ? ast.value : undefined),
});
