import { sql, type Kysely } from 'kysely';

/**
 * Admin stock adjustments, written synchronously: the ledger reaches PostgreSQL through the Redis
 * outbox, which Redis can lose, and a rebuild of live stock must still know every adjustment.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('stock_adjustments')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('sale_id', 'text', (c) => c.notNull())
    .addColumn('sale_item_id', 'text', (c) => c.notNull().references('sale_items.id'))
    .addColumn('delta', 'integer', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('admin_id', 'text', (c) => c.notNull())
    .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('stock_adjustments_sale').on('stock_adjustments').column('sale_id').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('stock_adjustments').execute();
}
