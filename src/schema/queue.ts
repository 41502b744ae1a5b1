import * as queue from '../resolvers/queue.js';
import type { QueueTicketView } from '../services/waiting-room.js';
import { builder } from './builder.js';
import { resultUnion } from './common.js';
import { Customer } from './viewer.js';

const QueueStatus = builder.enumType('QueueStatus', { values: ['PENDING', 'WAITING', 'ADMITTED', 'EXPIRED'] as const });

export const QueueTicket = builder.objectRef<QueueTicketView>('QueueTicket').implement({
  // Also a plain field type (Customer.queueTicket), not only a union member.
  isTypeOf: (v) => (v as QueueTicketView)?.kind === 'QueueTicket',
  fields: (t) => ({
    saleId: t.exposeID('saleId'),
    position: t.int({ nullable: true, description: '1-based among WAITING tickets; null while PENDING; 0 once ADMITTED', resolve: (q) => q.position }),
    status: t.field({ type: QueueStatus, resolve: (q) => q.status }),
    admissionToken: t.string({ nullable: true, description: 'set once ADMITTED; pass it to purchase/reserve', resolve: (q) => q.admissionToken }),
    admittedAt: t.field({ type: 'DateTime', nullable: true, resolve: (q) => q.admittedAt }),
    admissionExpiresAt: t.field({ type: 'DateTime', nullable: true, resolve: (q) => q.admissionExpiresAt }),
    estimatedWaitSeconds: t.int({ nullable: true, resolve: (q) => q.estimatedWaitSeconds }),
    saleSoldOut: t.exposeBoolean('saleSoldOut', { description: 'nothing is left to buy: no unit of the sale is available and none is held' }),
    holdsMayFree: t.exposeBoolean('holdsMayFree', { description: 'nothing is available now, but held units may come back when their holds end' }),
  }),
});

const QueueResult = resultUnion('QueueResult', QueueTicket);

builder.mutationFields((t) => ({
  joinQueue: t.field({
    type: QueueResult,
    authScopes: { customer: true },
    args: { saleId: t.arg.id({ required: true }) },
    resolve: (_r, a, ctx) => queue.joinQueue(a.saleId, ctx),
  }),
}));

builder.objectField(Customer, 'queueTicket', (t) =>
  t.field({
    type: QueueTicket,
    nullable: true,
    args: { saleId: t.arg.id({ required: true }) },
    resolve: (v, a, ctx) => queue.queueTicket(v, a.saleId, ctx),
  }),
);

builder.subscriptionFields((t) => ({
  queueChanged: t.field({
    type: QueueTicket,
    description: "The viewer's ticket: positions (at most every ~2 s) and admission (at once).",
    authScopes: { customer: true },
    args: { saleId: t.arg.id({ required: true }) },
    subscribe: (_r, a, ctx) => queue.queueChanges(a.saleId, ctx),
    resolve: (q) => q,
  }),
}));
