import { readVia, type Context } from '../schema/context.js';
import type { CreateProductInput } from '../services/catalog.js';
import { assertId } from '../services/validation.js';

export function product(id: string, ctx: Context) {
  assertId(id, 'id');
  return ctx.loaders.product.load(id);
}

export function products(args: { search?: string | null; first?: number | null; after?: string | null }, ctx: Context) {
  return ctx.services.catalog.products(args, readVia(ctx));
}

export function createProduct(input: CreateProductInput, ctx: Context) {
  return ctx.services.catalog.createProduct(input);
}
