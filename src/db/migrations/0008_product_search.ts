import { sql, type Kysely } from 'kysely';

/**
 * `products(search:)` finds the text anywhere in a product's name, SKU or description (a substring,
 * case-insensitive). A B-tree cannot serve `ILIKE '%text%'`; trigram GIN indexes can, one per column
 * so the planner ORs their bitmaps and the match stays exactly the substring test (an index on the
 * columns joined together would also match text spanning two of them). pg_trgm is a trusted
 * extension (PostgreSQL 13+): the database owner may create it without superuser rights.
 *
 * `products_name_id` serves the unsearched catalogue, listed by (name, id) a page at a time.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create extension if not exists pg_trgm`.execute(db);
  await sql`create index products_name_trgm on products using gin (name gin_trgm_ops)`.execute(db);
  await sql`create index products_sku_trgm on products using gin (sku gin_trgm_ops)`.execute(db);
  await sql`create index products_description_trgm on products using gin (description gin_trgm_ops)`.execute(db);
  await sql`create index products_name_id on products (name, id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index products_name_id`.execute(db);
  await sql`drop index products_description_trgm`.execute(db);
  await sql`drop index products_sku_trgm`.execute(db);
  await sql`drop index products_name_trgm`.execute(db);
  // The extension stays: other objects may have come to depend on it.
}
