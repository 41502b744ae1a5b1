import type { Viewer } from '../services/auth.js';
import * as viewer from '../resolvers/viewer.js';
import { builder } from './builder.js';
import { OrderConnection, Reservation } from './buying.js';

export const Customer = builder.objectRef<Viewer>('Customer').implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    orders: t.field({
      type: OrderConnection,
      args: { saleId: t.arg.id(), first: t.arg.int({ defaultValue: 20 }), after: t.arg.string() },
      resolve: (v, a, ctx) => viewer.orders(v, a, ctx),
    }),
    reservations: t.field({ type: [Reservation], args: { saleId: t.arg.id() }, resolve: (v, a, ctx) => viewer.reservations(v, a.saleId, ctx) }),
  }),
});

builder.queryFields((t) => ({
  me: t.field({ type: Customer, nullable: true, resolve: (_r, _a, ctx) => viewer.me(ctx) }),
}));
