import {
  getNamedType,
  getOperationAST,
  isObjectType,
  Kind,
  parse,
  TypeInfo,
  visit,
  visitWithTypeInfo,
  type GraphQLNamedType,
  type GraphQLSchema,
  type ValueNode,
} from 'graphql';
import { saleIdOf } from '../services/ids.js';

/**
 * Fields an anonymous answer may be shared for: each reads only the arguments, the sale's public
 * rows, its products and its live figures, never the viewer, and every change of what it shows is
 * announced on the sale's channel (stock and holds by the scripts' callers, admin changes by the
 * sales service, clock transitions by the status watch). Products never change once created.
 * A field not listed here (a viewer's data, `saleSummary`'s rejection counts, `serverTime`, the
 * `sales` list, which no event announces a new sale to) makes the whole operation uncacheable.
 */
const CACHEABLE_FIELDS: Readonly<Record<string, ReadonlySet<string>>> = {
  Query: new Set(['sale', 'saleItem']),
  Sale: new Set(['id', 'name', 'startsAt', 'endsAt', 'status', 'perUserLimit', 'holdSeconds', 'waitingRoom', 'admitPerSecond', 'currency', 'items', 'available', 'soldOutAt']),
  SaleItem: new Set(['id', 'sale', 'product', 'priceCents', 'initialStock', 'available', 'reserved', 'sold']),
  Product: new Set(['id', 'sku', 'name', 'description', 'priceCents', 'currency', 'imageUrl']),
};

/** The root fields of a cacheable query and the argument naming the sale each one depends on. */
export interface CachePlan {
  operationName: string;
  roots: { field: 'sale' | 'saleItem'; id: ValueNode }[];
}

function hasAuthScopes(thing: { extensions?: Readonly<Record<string, unknown>> | null }): boolean {
  const options = thing.extensions?.pothosOptions as { authScopes?: unknown; grantScopes?: unknown } | undefined;
  return options?.authScopes !== undefined || options?.grantScopes !== undefined;
}

/**
 * The plan of a document whose answer may be shared between anonymous callers, or null: exactly
 * one operation, a query, every selected field (fragments included) listed in CACHEABLE_FIELDS
 * without auth scopes, and only `sale(id:)` / `saleItem(id:)` at the root.
 */
export function cachePlanOf(schema: GraphQLSchema, text: string, operationName: string | null | undefined): CachePlan | null {
  let document;
  try {
    document = parse(text, { noLocation: true });
  } catch {
    return null;
  }
  const operations = document.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
  const operation = getOperationAST(document, operationName);
  if (operations.length !== 1 || !operation || operation.operation !== 'query') return null;
  const roots: CachePlan['roots'] = [];
  const typeInfo = new TypeInfo(schema);
  let cacheable = true;
  visit(document, visitWithTypeInfo(typeInfo, {
    Field(node) {
      if (node.name.value === '__typename') return undefined;
      const parent: GraphQLNamedType | null = typeInfo.getParentType() ?? null;
      const field = typeInfo.getFieldDef();
      const type = field ? getNamedType(field.type) : null;
      const listed = parent ? CACHEABLE_FIELDS[parent.name]?.has(node.name.value) : false;
      const scoped = !field || hasAuthScopes(field) || (parent !== null && hasAuthScopes(parent)) || (type !== null && isObjectType(type) && hasAuthScopes(type));
      if (!listed || scoped) {
        cacheable = false;
        return false;
      }
      if (parent?.name === 'Query') {
        const id = node.arguments?.find((a) => a.name.value === 'id')?.value;
        if (!id) {
          cacheable = false;
          return false;
        }
        roots.push({ field: node.name.value as 'sale' | 'saleItem', id });
      }
      return undefined;
    },
  }));
  if (!cacheable || roots.length === 0) return null;
  return { operationName: operation.name?.value ?? 'Anonymous', roots };
}

/** The sales an answer of the plan depends on, for these variables; null when an id is not one we can read. */
export function salesOfPlan(plan: CachePlan, variables: Record<string, unknown> | null | undefined): string[] | null {
  const saleIds: string[] = [];
  for (const root of plan.roots) {
    const id = valueOf(root.id, variables);
    if (id === null) return null;
    const saleId = root.field === 'sale' ? id : saleIdOf(id);
    if (!saleId) return null;
    if (!saleIds.includes(saleId)) saleIds.push(saleId);
  }
  return saleIds;
}

function valueOf(node: ValueNode, variables: Record<string, unknown> | null | undefined): string | null {
  if (node.kind === Kind.STRING || node.kind === Kind.INT) return node.value;
  if (node.kind === Kind.VARIABLE) {
    const v = variables?.[node.name.value];
    if (typeof v === 'string' && v.length > 0) return v;
    if (typeof v === 'number' && Number.isInteger(v)) return String(v);
  }
  return null;
}
