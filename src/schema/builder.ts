import SchemaBuilder from '@pothos/core';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import { forbidden, unauthenticated } from '../services/errors.js';
import type { Context } from './context.js';

export const builder = new SchemaBuilder<{
  Context: Context;
  AuthScopes: { customer: boolean; admin: boolean };
  Scalars: {
    DateTime: { Input: Date; Output: Date | string | number };
    BigInt: { Input: bigint; Output: bigint | number | string };
    ID: { Input: string; Output: string };
  };
  DefaultFieldNullability: false;
}>({
  plugins: [ScopeAuthPlugin],
  defaultFieldNullability: false,
  scopeAuth: {
    authScopes: (ctx) => ({ customer: ctx.viewer !== null, admin: ctx.viewer?.role === 'admin' }),
    unauthorizedError: (_parent, ctx) => (ctx.viewer ? forbidden() : unauthenticated(ctx.authError ?? undefined)),
  },
});

builder.queryType({});
builder.mutationType({});
