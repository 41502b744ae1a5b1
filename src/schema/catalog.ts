import type { ProductRow } from '../db/types.js';
import * as catalog from '../resolvers/catalog.js';
import { builder } from './builder.js';
import { connection } from './common.js';

export const Product = builder.objectRef<ProductRow>('Product').implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    sku: t.exposeString('sku'),
    name: t.exposeString('name'),
    description: t.exposeString('description', { nullable: true }),
    priceCents: t.exposeInt('price_cents'),
    currency: t.exposeString('currency'),
    imageUrl: t.exposeString('image_url', { nullable: true }),
  }),
});

const ProductConnection = connection<ProductRow>('Product', Product);

const CreateProductInput = builder.inputType('CreateProductInput', {
  fields: (t) => ({
    sku: t.string({ required: true }),
    name: t.string({ required: true }),
    description: t.string(),
    priceCents: t.int({ required: true }),
    currency: t.string({ required: true }),
    imageUrl: t.string(),
  }),
});

builder.queryFields((t) => ({
  product: t.field({ type: Product, nullable: true, args: { id: t.arg.id({ required: true }) }, resolve: (_r, a, ctx) => catalog.product(a.id, ctx) }),
  products: t.field({
    type: ProductConnection,
    args: { search: t.arg.string(), first: t.arg.int({ defaultValue: 20 }), after: t.arg.string() },
    resolve: (_r, a, ctx) => catalog.products(a, ctx),
  }),
}));

builder.mutationFields((t) => ({
  createProduct: t.field({
    type: Product,
    authScopes: { admin: true },
    args: { input: t.arg({ type: CreateProductInput, required: true }) },
    resolve: (_r, a, ctx) => catalog.createProduct(a.input, ctx),
  }),
}));
