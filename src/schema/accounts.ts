import * as accounts from '../resolvers/accounts.js';
import type { Session } from '../services/accounts.js';
import { builder } from './builder.js';

const AuthPayload = builder.objectRef<Session>('AuthPayload').implement({
  fields: (t) => ({
    token: t.exposeString('token', { description: 'Bearer JWT (HS256), as described in CONTRACT.md.' }),
    customerId: t.exposeID('customerId'),
    expiresAt: t.field({ type: 'DateTime', resolve: (s) => s.expiresAt }),
  }),
});

builder.mutationFields((t) => ({
  register: t.field({
    type: AuthPayload,
    args: { email: t.arg.string({ required: true }), password: t.arg.string({ required: true }) },
    resolve: (_r, a, ctx) => accounts.register(a, ctx),
  }),
  login: t.field({
    type: AuthPayload,
    args: { email: t.arg.string({ required: true }), password: t.arg.string({ required: true }) },
    resolve: (_r, a, ctx) => accounts.login(a, ctx),
  }),
}));
