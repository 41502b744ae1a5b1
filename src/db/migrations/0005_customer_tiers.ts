import { sql, type Kysely } from 'kysely';

/**
 * Customer tiers an admin set (`setCustomerTier`), by customer id (the token's `sub`, whoever
 * issued it: no foreign key to `users`, identity-provider customers have no row there). A
 * customer without a row is STANDARD, or what their identity provider's `tier` claim says. Every
 * instance keeps the whole table in memory (src/services/customer-tiers.ts) and reloads the rows
 * changed since its last look by `updated_at`.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('customer_tiers')
    .addColumn('customer_id', 'text', (c) => c.primaryKey())
    .addColumn('tier', 'text', (c) => c.notNull().check(sql`tier in ('STANDARD', 'TRUSTED', 'RESTRICTED')`))
    .addColumn('set_by', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('customer_tiers_updated_at').on('customer_tiers').column('updated_at').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('customer_tiers').execute();
}
