import {
  getNamedType,
  isObjectType,
  TypeInfo,
  visit,
  visitWithTypeInfo,
  type DocumentNode,
  type FieldNode,
  type GraphQLNamedType,
  type GraphQLSchema,
} from 'graphql';

/**
 * Fields that answer the same for every caller: they read only their arguments (or the event), the
 * sale's public rows, its products and its live figures, never the viewer, and none has auth
 * scopes. Every change of what they show is announced on the sale's channel (stock and holds by
 * the scripts' callers, admin changes by the sales service, clock transitions by the status
 * watch); products never change once created. A field added to one of these types is not here
 * until someone decided it is public, so a document selecting it is simply not shared.
 */
export const PUBLIC_FIELDS: Readonly<Record<string, ReadonlySet<string>>> = {
  StockUpdate: new Set(['saleId', 'status', 'version', 'items', 'at']),
  StockLevel: new Set(['saleItemId', 'saleItem', 'available', 'reserved', 'sold']),
  Sale: new Set(['id', 'name', 'startsAt', 'endsAt', 'status', 'perUserLimit', 'holdSeconds', 'waitingRoom', 'admitPerSecond', 'currency', 'items', 'available', 'soldOutAt']),
  SaleItem: new Set(['id', 'sale', 'product', 'priceCents', 'initialStock', 'available', 'reserved', 'sold']),
  Product: new Set(['id', 'sku', 'name', 'description', 'priceCents', 'currency', 'imageUrl']),
};

function hasAuthScopes(thing: { extensions?: Readonly<Record<string, unknown>> | null }): boolean {
  const options = thing.extensions?.pothosOptions as { authScopes?: unknown; grantScopes?: unknown } | undefined;
  return options?.authScopes !== undefined || options?.grantScopes !== undefined;
}

/**
 * Whether every field the document selects (fragments included, used or not) is public: one of
 * `rootFields` on a root type, listed in PUBLIC_FIELDS below it, and without auth scopes on the
 * field, its parent or its type. `onRoot` sees each root field and may refuse it.
 */
export function selectsOnlyPublicFields(schema: GraphQLSchema, document: DocumentNode, rootFields: ReadonlySet<string>, onRoot?: (node: FieldNode) => boolean): boolean {
  const roots = new Set([schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()].filter((t) => t != null));
  const typeInfo = new TypeInfo(schema);
  let ok = true;
  visit(document, visitWithTypeInfo(typeInfo, {
    Field(node) {
      if (node.name.value === '__typename') return undefined;
      const parent: GraphQLNamedType | null = typeInfo.getParentType() ?? null;
      const field = typeInfo.getFieldDef();
      const type = field ? getNamedType(field.type) : null;
      const atRoot = parent !== null && roots.has(parent as never);
      const listed = parent === null ? false : atRoot ? rootFields.has(node.name.value) : PUBLIC_FIELDS[parent.name]?.has(node.name.value) === true;
      const scoped = !field || hasAuthScopes(field) || (parent !== null && hasAuthScopes(parent)) || (type !== null && isObjectType(type) && hasAuthScopes(type));
      if (!listed || scoped || (atRoot && onRoot && !onRoot(node))) {
        ok = false;
        return false;
      }
      return undefined;
    },
  }));
  return ok;
}
