import { ERROR_CODES, type Rejected } from '../services/errors.js';
import type { Page } from '../services/pagination.js';
import { builder } from './builder.js';

export const ErrorCodeEnum = builder.enumType('ErrorCode', { values: ERROR_CODES });

export const PageInfo = builder.objectRef<{ hasNextPage: boolean; endCursor: string | null }>('PageInfo').implement({
  fields: (t) => ({
    hasNextPage: t.exposeBoolean('hasNextPage'),
    endCursor: t.exposeString('endCursor', { nullable: true }),
  }),
});

/** A connection type (edges with cursors, pageInfo) over a service `Page`. */
export function connection<T>(name: string, node: any) {
  const edge = builder.objectRef<{ node: T; cursor: string }>(`${name}Edge`).implement({
    fields: (t) => ({
      cursor: t.exposeString('cursor'),
      node: t.field({ type: node, resolve: (e) => e.node as any }),
    }),
  });
  return builder.objectRef<Page<T>>(`${name}Connection`).implement({
    fields: (t) => ({
      edges: t.field({ type: [edge], resolve: (p) => p.nodes.map((node) => ({ node, cursor: p.cursorOf(node) })) }),
      pageInfo: t.field({ type: PageInfo, resolve: (p) => ({ hasNextPage: p.hasNextPage, endCursor: p.endCursor }) }),
    }),
  });
}

export const UserError = builder.interfaceRef<Rejected>('UserError').implement({
  description: 'Every expected business failure is a value, not a GraphQL error.',
  fields: (t) => ({
    code: t.field({ type: ErrorCodeEnum, resolve: (r) => r.code }),
    message: t.exposeString('message'),
  }),
});

export const RejectedType = builder.objectRef<Rejected>('Rejected').implement({
  interfaces: [UserError],
  isTypeOf: (v) => (v as Rejected)?.kind === 'Rejected',
  fields: (t) => ({
    field: t.string({ nullable: true, resolve: (r) => r.field ?? null }),
    retryAfterSeconds: t.int({ nullable: true, resolve: (r) => r.retryAfterSeconds ?? null }),
    available: t.int({ nullable: true, resolve: (r) => r.available ?? null }),
    waitlistOpen: t.boolean({ resolve: (r) => r.waitlistOpen }),
  }),
});

/** Unions resolve by the `kind` every result value carries (typed as the value shape for field use). */
export function resultUnion<S extends { kind: string }>(name: string, success: { $inferType: S }) {
  return builder.unionType(name, {
    types: [success as any, RejectedType],
    resolveType: (value: S | Rejected) => value.kind,
  }) as unknown as ReturnType<typeof builder.objectRef<S | Rejected>>;
}
