import type { OrderRow } from '../db/types.js';
import * as buying from '../resolvers/buying.js';
import type { ReservationView } from '../services/reservations.js';
import type { PurchaseResult, ReserveResult, ReleaseResult, CancelResult } from '../services/purchases.js';
import { builder } from './builder.js';
import { connection, resultUnion } from './common.js';
import { SaleItem } from './sale.js';

const ReservationStatus = builder.enumType('ReservationStatus', { values: ['HELD', 'CONFIRMED', 'RELEASED', 'EXPIRED'] as const });
const ReservationEndReason = builder.enumType('ReservationEndReason', {
  values: ['EXPIRED', 'CUSTOMER', 'ADMIN', 'SALE_CANCELLED', 'CONFIRM_FAILED', 'STOCK_REBUILT'] as const,
});
const OrderStatus = builder.enumType('OrderStatus', { values: ['CONFIRMED', 'CANCELLED'] as const });
const PaymentMethod = builder.enumType('PaymentMethod', { values: ['CASH_ON_DELIVERY'] as const });

export const Order = builder.objectRef<OrderRow>('Order');
export const Reservation = builder.objectRef<ReservationView>('Reservation');

export interface DeliveryView {
  name: string;
  phone: string;
  addressLine1: string;
  addressLine2?: string | null;
  city: string;
  postalCode: string;
  country: string;
}

export const DeliveryDetails = builder.objectRef<DeliveryView>('DeliveryDetails').implement({
  fields: (t) => ({
    name: t.exposeString('name'),
    phone: t.exposeString('phone'),
    addressLine1: t.exposeString('addressLine1'),
    addressLine2: t.string({ nullable: true, resolve: (d) => d.addressLine2 ?? null }),
    city: t.exposeString('city'),
    postalCode: t.exposeString('postalCode'),
    country: t.exposeString('country'),
  }),
});

Order.implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    customerId: t.exposeID('customer_id'),
    saleItem: t.field({ type: SaleItem, resolve: (o, _a, ctx) => buying.saleItemOf(o.sale_item_id, ctx) }),
    quantity: t.exposeInt('quantity'),
    unitPriceCents: t.exposeInt('unit_price_cents'),
    totalCents: t.int({ resolve: (o) => Number(o.total_cents) }),
    status: t.field({ type: OrderStatus, resolve: (o) => o.status }),
    paymentMethod: t.field({ type: PaymentMethod, resolve: (o) => o.payment_method }),
    idempotencyKey: t.exposeString('idempotency_key', { nullable: true }),
    delivery: t.field({ type: DeliveryDetails, nullable: true, resolve: (o, _a, ctx) => buying.deliveryOf(o, ctx) }),
    createdAt: t.field({ type: 'DateTime', resolve: (o) => o.created_at }),
  }),
});

Reservation.implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    saleItem: t.field({ type: SaleItem, resolve: (r, _a, ctx) => buying.saleItemOf(r.saleItemId, ctx) }),
    quantity: t.exposeInt('quantity'),
    status: t.field({ type: ReservationStatus, resolve: (r) => r.status }),
    createdAt: t.field({ type: 'DateTime', resolve: (r) => new Date(r.createdAt) }),
    expiresAt: t.field({ type: 'DateTime', resolve: (r) => new Date(r.expiresAt) }),
    endReason: t.field({ type: ReservationEndReason, nullable: true, resolve: (r) => buying.endReasonOf(r) }),
    fromWaitlist: t.exposeBoolean('fromWaitlist'),
    order: t.field({ type: Order, nullable: true, resolve: (r, _a, ctx) => (r.orderId ? ctx.loaders.order.load(r.orderId) : null) }),
  }),
});

export const OrderConnection = connection<OrderRow>('Order', Order);

const PurchaseSuccess = builder.objectRef<Extract<PurchaseResult, { kind: 'PurchaseSuccess' }>>('PurchaseSuccess').implement({
  fields: (t) => ({ order: t.field({ type: Order, resolve: (s) => s.order }), replayed: t.exposeBoolean('replayed') }),
});
const ReserveSuccess = builder.objectRef<Extract<ReserveResult, { kind: 'ReserveSuccess' }>>('ReserveSuccess').implement({
  fields: (t) => ({ reservation: t.field({ type: Reservation, resolve: (s) => s.reservation }), replayed: t.exposeBoolean('replayed') }),
});
const ReleaseSuccess = builder.objectRef<Extract<ReleaseResult, { kind: 'ReleaseSuccess' }>>('ReleaseSuccess').implement({
  fields: (t) => ({ reservation: t.field({ type: Reservation, resolve: (s) => s.reservation }) }),
});
const CancelOrderSuccess = builder.objectRef<Extract<CancelResult, { kind: 'CancelOrderSuccess' }>>('CancelOrderSuccess').implement({
  fields: (t) => ({ order: t.field({ type: Order, resolve: (s) => s.order }) }),
});

const PurchaseResultUnion = resultUnion('PurchaseResult', PurchaseSuccess);
const ConfirmReservationResult = resultUnion('ConfirmReservationResult', PurchaseSuccess);
const ReserveResultUnion = resultUnion('ReserveResult', ReserveSuccess);
const ReleaseResultUnion = resultUnion('ReleaseResult', ReleaseSuccess);
const CancelOrderResult = resultUnion('CancelOrderResult', CancelOrderSuccess);

export const DeliveryInput = builder.inputType('DeliveryInput', {
  fields: (t) => ({
    name: t.string({ required: true }),
    phone: t.string({ required: true }),
    addressLine1: t.string({ required: true }),
    addressLine2: t.string(),
    city: t.string({ required: true }),
    postalCode: t.string({ required: true }),
    country: t.string({ required: true }),
  }),
});

const PurchaseInput = builder.inputType('PurchaseInput', {
  fields: (t) => ({
    saleItemId: t.id({ required: true }),
    quantity: t.int({ required: true, defaultValue: 1 }),
    idempotencyKey: t.string({ required: true }),
    admissionToken: t.string(),
    delivery: t.field({ type: DeliveryInput }),
  }),
});

const ReserveInput = builder.inputType('ReserveInput', {
  fields: (t) => ({
    saleItemId: t.id({ required: true }),
    quantity: t.int({ required: true, defaultValue: 1 }),
    idempotencyKey: t.string({ required: true }),
    admissionToken: t.string(),
  }),
});

builder.queryFields((t) => ({
  order: t.field({ type: Order, nullable: true, args: { id: t.arg.id({ required: true }) }, resolve: (_r, a, ctx) => buying.order(a.id, ctx) }),
  reservation: t.field({ type: Reservation, nullable: true, args: { id: t.arg.id({ required: true }) }, resolve: (_r, a, ctx) => buying.reservation(a.id, ctx) }),
  orders: t.field({
    type: OrderConnection,
    authScopes: { admin: true },
    args: { saleId: t.arg.id({ required: true }), status: t.arg({ type: OrderStatus }), first: t.arg.int({ defaultValue: 20 }), after: t.arg.string() },
    resolve: (_r, a, ctx) => buying.saleOrders(a, ctx),
  }),
}));

builder.mutationFields((t) => ({
  purchase: t.field({
    type: PurchaseResultUnion,
    authScopes: { customer: true },
    args: { input: t.arg({ type: PurchaseInput, required: true }) },
    resolve: (_r, a, ctx) => buying.purchase(a.input, ctx),
  }),
  reserve: t.field({
    type: ReserveResultUnion,
    authScopes: { customer: true },
    args: { input: t.arg({ type: ReserveInput, required: true }) },
    resolve: (_r, a, ctx) => buying.reserve(a.input, ctx),
  }),
  confirmReservation: t.field({
    type: ConfirmReservationResult,
    authScopes: { customer: true },
    args: { reservationId: t.arg.id({ required: true }), delivery: t.arg({ type: DeliveryInput }) },
    resolve: (_r, a, ctx) => buying.confirm(a.reservationId, a.delivery, ctx),
  }),
  releaseReservation: t.field({
    type: ReleaseResultUnion,
    authScopes: { customer: true },
    args: { reservationId: t.arg.id({ required: true }) },
    resolve: (_r, a, ctx) => buying.release(a.reservationId, ctx),
  }),
  cancelOrder: t.field({
    type: CancelOrderResult,
    authScopes: { customer: true },
    args: { orderId: t.arg.id({ required: true }) },
    resolve: (_r, a, ctx) => buying.cancelOrder(a.orderId, ctx),
  }),
}));
