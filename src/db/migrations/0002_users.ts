import { sql, type Kysely } from 'kysely';

/** The built-in identity: one row per registered customer; the row id is the token's `sub`. */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('users')
    .addColumn('id', 'text', (c) => c.primaryKey())
    // Stored normalised (trimmed, lower-case) by the service, so a plain unique index is enough.
    .addColumn('email', 'text', (c) => c.notNull().unique())
    // A PHC-style string carrying the KDF parameters and salt, so the cost can rise without a migration.
    .addColumn('password_hash', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('password_changed_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('users').ifExists().execute();
}
