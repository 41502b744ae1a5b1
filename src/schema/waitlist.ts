import * as waitlist from '../resolvers/waitlist.js';
import type { WaitlistEntryView } from '../services/waitlist.js';
import { builder } from './builder.js';
import { Reservation } from './buying.js';
import { resultUnion } from './common.js';
import { SaleItem } from './sale.js';
import { Customer } from './viewer.js';

const WaitlistStatus = builder.enumType('WaitlistStatus', { values: ['WAITING', 'OFFERED', 'FULFILLED', 'LAPSED', 'LEFT'] as const });

export const WaitlistEntry = builder.objectRef<WaitlistEntryView>('WaitlistEntry').implement({
  // Both a union member and a plain field type: its own type check too.
  isTypeOf: (v) => (v as WaitlistEntryView)?.kind === 'WaitlistEntry',
  fields: (t) => ({
    id: t.exposeID('id'),
    saleItem: t.field({ type: SaleItem, resolve: (e, _a, ctx) => waitlist.saleItemOf(e, ctx) }),
    quantity: t.exposeInt('quantity'),
    position: t.exposeInt('position'),
    status: t.field({ type: WaitlistStatus, resolve: (e) => e.status }),
    offer: t.field({ type: Reservation, nullable: true, resolve: (e, _a, ctx) => waitlist.offerOf(e, ctx) }),
    joinedAt: t.field({ type: 'DateTime', resolve: (e) => new Date(e.joinedAt) }),
  }),
});

const WaitlistResult = resultUnion('WaitlistResult', WaitlistEntry);
const LeaveWaitlistResult = resultUnion('LeaveWaitlistResult', WaitlistEntry);

builder.mutationFields((t) => ({
  joinWaitlist: t.field({
    type: WaitlistResult,
    authScopes: { customer: true },
    args: { saleItemId: t.arg.id({ required: true }), quantity: t.arg.int({ required: true, defaultValue: 1 }) },
    resolve: (_r, a, ctx) => waitlist.join(a.saleItemId, a.quantity, ctx),
  }),
  leaveWaitlist: t.field({
    type: LeaveWaitlistResult,
    authScopes: { customer: true },
    args: { saleItemId: t.arg.id({ required: true }) },
    resolve: (_r, a, ctx) => waitlist.leave(a.saleItemId, ctx),
  }),
}));

builder.objectField(Customer, 'waitlist', (t) =>
  t.field({ type: [WaitlistEntry], args: { saleId: t.arg.id() }, resolve: (v, a, ctx) => waitlist.entriesOf(v, a.saleId, ctx) }),
);

builder.subscriptionFields((t) => ({
  waitlistChanged: t.field({
    type: WaitlistEntry,
    description: "The viewer's waitlist entries of this sale: positions (at most every ~2 s) and offers (at once).",
    authScopes: { customer: true },
    args: { saleId: t.arg.id({ required: true }) },
    subscribe: (_r, a, ctx) => waitlist.changes(a.saleId, ctx),
    resolve: (e) => e,
  }),
}));
