import { getOperationAST, Kind, parse, type GraphQLSchema, type ValueNode } from 'graphql';
import { selectsOnlyPublicFields } from '../schema/public-fields.js';
import { saleIdOf } from '../services/ids.js';

/**
 * Root fields whose anonymous answer may be shared (with public fields only, PUBLIC_FIELDS): each
 * names the one sale it depends on. Anything else (a viewer's data, `saleSummary`'s rejection
 * counts, `serverTime`, the `sales` list, which no event announces a new sale to) makes the whole
 * operation uncacheable.
 */
export const CACHEABLE_ROOT_FIELDS: ReadonlySet<string> = new Set(['sale', 'saleItem']);

/** The root fields of a cacheable query and the argument naming the sale each one depends on. */
export interface CachePlan {
  operationName: string;
  roots: { field: 'sale' | 'saleItem'; id: ValueNode }[];
}

/**
 * The plan of a document whose answer may be shared between anonymous callers, or null: exactly
 * one operation, a query, selecting only public fields, and only `sale(id:)` / `saleItem(id:)` at
 * the root.
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
  const cacheable = selectsOnlyPublicFields(schema, document, CACHEABLE_ROOT_FIELDS, (node) => {
    const id = node.arguments?.find((a) => a.name.value === 'id')?.value;
    if (id) roots.push({ field: node.name.value as 'sale' | 'saleItem', id });
    return id !== undefined;
  });
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
