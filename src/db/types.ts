import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';

type CreatedAt = ColumnType<Date, Date | string | undefined, never>;

export interface ProductTable {
  id: string;
  sku: string;
  name: string;
  description: string | null;
  price_cents: number;
  currency: string;
  image_url: string | null;
  created_at: CreatedAt;
}

export interface SaleTable {
  id: string;
  name: string;
  starts_at: Date;
  ends_at: Date;
  per_user_limit: number;
  hold_seconds: number;
  waiting_room: boolean;
  admit_per_second: number | null;
  currency: string;
  /** Admin state; the public status is derived from it, the clock and live stock. */
  state: 'OPEN' | 'PAUSED' | 'CANCELLED';
  sold_out_at: Date | null;
  /** Fencing epoch of the sale's live state in Redis: raised by every rebuild (see migration 0004). */
  live_epoch: ColumnType<number, number | undefined, number>;
  created_at: CreatedAt;
}

export interface SaleItemTable {
  id: string;
  sale_id: string;
  product_id: string;
  position: number;
  price_cents: number;
  initial_stock: number;
  /** initial_stock + adjustments; a trigger fills it on insert. */
  stock: ColumnType<number, number | undefined, number>;
  /** CONFIRMED units, kept by triggers on orders; CHECK sold <= stock. */
  sold: ColumnType<number, number | undefined, number>;
  /** Highest live version an order of this item was sold at (Redis' meta `ver`). */
  max_live_version: ColumnType<string, string | undefined, string>;
}

export interface ReservationTable {
  id: string;
  sale_id: string;
  sale_item_id: string;
  customer_id: string;
  quantity: number;
  status: 'HELD' | 'CONFIRMED' | 'RELEASED' | 'EXPIRED';
  end_reason: string | null;
  idempotency_key: string | null;
  from_waitlist: boolean;
  created_at: Date;
  expires_at: Date;
  ended_at: Date | null;
}

export interface OrderTable {
  id: string;
  sale_id: string;
  sale_item_id: string;
  reservation_id: string;
  customer_id: string;
  quantity: number;
  unit_price_cents: number;
  total_cents: number;
  status: 'CONFIRMED' | 'CANCELLED';
  payment_method: 'CASH_ON_DELIVERY';
  idempotency_key: string | null;
  delivery_enc: string | null;
  /** The live-state epoch and version its hold was decided in (null for orders before migration 0004). */
  live_epoch: ColumnType<number | null, number | null | undefined, number | null>;
  live_version: ColumnType<string | null, string | number | null | undefined, string | null>;
  created_at: CreatedAt;
  cancelled_at: Date | null;
}

export interface StockEventTable {
  id: Generated<string>;
  sale_id: string;
  sale_item_id: string;
  /** The Redis stream entry id of the outbox; with sale_id it makes the drain idempotent. */
  stream_id: string;
  kind: 'INITIAL' | 'RESERVED' | 'RELEASED' | 'EXPIRED' | 'CONFIRMED' | 'CANCELLED' | 'ADJUSTED';
  delta: number;
  available_after: number;
  customer_id: string | null;
  reservation_id: string | null;
  reason: string | null;
  at: Date;
  /** The outbox event before this one (migration 0007): a sale's events form one chain. */
  prev_stream_id: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface UserTable {
  id: string;
  /** Normalised: trimmed and lower-case. */
  email: string;
  /** `$scrypt$ln=..,r=..,p=..$<salt>$<hash>`; never leaves the accounts service. */
  password_hash: string;
  created_at: CreatedAt;
  password_changed_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface StockAdjustmentTable {
  id: Generated<string>;
  sale_id: string;
  sale_item_id: string;
  delta: number;
  reason: string;
  admin_id: string;
  at: CreatedAt;
}

/** A tier an admin set for a customer (migration 0005); customers without a row are STANDARD or their token's claim. */
export interface CustomerTierTable {
  customer_id: string;
  tier: 'STANDARD' | 'TRUSTED' | 'RESTRICTED';
  /** The admin's subject. */
  set_by: string;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface CustomerUnitsTable {
  sale_item_id: string;
  customer_id: string;
  units: number;
  cap: number;
}

export interface LiveVersionTable {
  sale_id: string;
  /** bigint: pg returns it as a string. */
  drained_version: ColumnType<string, string | number, string | number>;
  /** The outbox id of the sale's latest rebuild (see migration 0007). */
  rebuilt_marker: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface Database {
  live_versions: LiveVersionTable;
  customer_units: CustomerUnitsTable;
  customer_tiers: CustomerTierTable;
  products: ProductTable;
  sales: SaleTable;
  sale_items: SaleItemTable;
  reservations: ReservationTable;
  orders: OrderTable;
  stock_events: StockEventTable;
  users: UserTable;
  stock_adjustments: StockAdjustmentTable;
}

export type ProductRow = Selectable<ProductTable>;
export type SaleRow = Selectable<SaleTable>;
export type SaleItemRow = Selectable<SaleItemTable>;
export type ReservationRow = Selectable<ReservationTable>;
export type OrderRow = Selectable<OrderTable>;
export type NewOrder = Insertable<OrderTable>;
export type StockEventRow = Selectable<StockEventTable>;
export type UserRow = Selectable<UserTable>;
