import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('products')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('sku', 'text', (c) => c.notNull().unique())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('price_cents', 'integer', (c) => c.notNull().check(sql`price_cents >= 0`))
    .addColumn('currency', 'char(3)', (c) => c.notNull())
    .addColumn('image_url', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable('sales')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('starts_at', 'timestamptz', (c) => c.notNull())
    .addColumn('ends_at', 'timestamptz', (c) => c.notNull())
    .addColumn('per_user_limit', 'integer', (c) => c.notNull())
    .addColumn('hold_seconds', 'integer', (c) => c.notNull())
    .addColumn('waiting_room', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('admit_per_second', 'integer')
    .addColumn('currency', 'char(3)', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull().defaultTo('OPEN'))
    .addColumn('sold_out_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint('sales_window', sql`starts_at < ends_at`)
    .execute();
  await db.schema.createIndex('sales_starts_at').on('sales').columns(['starts_at', 'id']).execute();

  await db.schema
    .createTable('sale_items')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('sale_id', 'text', (c) => c.notNull().references('sales.id'))
    .addColumn('product_id', 'text', (c) => c.notNull().references('products.id'))
    .addColumn('position', 'integer', (c) => c.notNull())
    .addColumn('price_cents', 'integer', (c) => c.notNull().check(sql`price_cents >= 0`))
    .addColumn('initial_stock', 'integer', (c) => c.notNull().check(sql`initial_stock > 0`))
    .execute();
  await db.schema.createIndex('sale_items_sale').on('sale_items').columns(['sale_id', 'position']).execute();

  await db.schema
    .createTable('reservations')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('sale_id', 'text', (c) => c.notNull())
    .addColumn('sale_item_id', 'text', (c) => c.notNull().references('sale_items.id'))
    .addColumn('customer_id', 'text', (c) => c.notNull())
    .addColumn('quantity', 'integer', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('end_reason', 'text')
    .addColumn('idempotency_key', 'text')
    .addColumn('from_waitlist', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('ended_at', 'timestamptz')
    .execute();
  await db.schema.createIndex('reservations_customer').on('reservations').columns(['customer_id', 'created_at']).execute();

  await db.schema
    .createTable('orders')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('sale_id', 'text', (c) => c.notNull().references('sales.id'))
    .addColumn('sale_item_id', 'text', (c) => c.notNull().references('sale_items.id'))
    // One order per hold: a retried confirm can never write a second row.
    .addColumn('reservation_id', 'text', (c) => c.notNull().unique())
    .addColumn('customer_id', 'text', (c) => c.notNull())
    .addColumn('quantity', 'integer', (c) => c.notNull().check(sql`quantity > 0`))
    .addColumn('unit_price_cents', 'integer', (c) => c.notNull())
    .addColumn('total_cents', 'bigint', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('payment_method', 'text', (c) => c.notNull())
    .addColumn('idempotency_key', 'text')
    .addColumn('delivery_enc', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('cancelled_at', 'timestamptz')
    .execute();
  // The durable half of idempotency: one order per customer and key, whatever Redis remembers.
  await db.schema
    .createIndex('orders_customer_idempotency')
    .on('orders')
    .columns(['customer_id', 'idempotency_key'])
    .unique()
    .where(sql.ref('idempotency_key'), 'is not', null)
    .execute();
  await db.schema.createIndex('orders_customer_created').on('orders').columns(['customer_id', 'created_at', 'id']).execute();
  await db.schema.createIndex('orders_sale_created').on('orders').columns(['sale_id', 'created_at', 'id']).execute();

  await db.schema
    .createTable('stock_events')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('sale_id', 'text', (c) => c.notNull())
    .addColumn('sale_item_id', 'text', (c) => c.notNull())
    .addColumn('stream_id', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('delta', 'integer', (c) => c.notNull())
    .addColumn('available_after', 'integer', (c) => c.notNull())
    .addColumn('customer_id', 'text')
    .addColumn('reservation_id', 'text')
    .addColumn('reason', 'text')
    .addColumn('at', 'timestamptz', (c) => c.notNull())
    .addUniqueConstraint('stock_events_stream', ['sale_id', 'stream_id', 'sale_item_id'])
    .execute();
  await db.schema.createIndex('stock_events_item').on('stock_events').columns(['sale_item_id', 'id']).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const t of ['stock_events', 'orders', 'reservations', 'sale_items', 'sales', 'products']) {
    await db.schema.dropTable(t).ifExists().execute();
  }
}
