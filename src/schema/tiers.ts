import * as tiers from '../resolvers/tiers.js';
import { CUSTOMER_TIERS } from '../services/customer-tiers.js';
import { builder } from './builder.js';
import { Customer } from './viewer.js';

export const CustomerTier = builder.enumType('CustomerTier', {
  description: "A customer's rate limits on buying and fairness mutations (RATE_LIMIT_TIER_* in the server's configuration).",
  values: Object.fromEntries(
    CUSTOMER_TIERS.map((tier) => [tier, {
      description: {
        STANDARD: 'The default: a burst and a sustained rate that fit a person.',
        TRUSTED: 'Higher limits.',
        RESTRICTED: 'Lower limits.',
      }[tier],
    }]),
  ) as Record<(typeof CUSTOMER_TIERS)[number], { description: string }>,
});

builder.objectField(Customer, 'tier', (t) =>
  t.field({
    type: CustomerTier,
    description: "Set by an admin (setCustomerTier), else the identity provider token's `tier` claim, else STANDARD.",
    resolve: (v, _a, ctx) => tiers.tierOf(v, ctx),
  }),
);

builder.mutationFields((t) => ({
  setCustomerTier: t.field({
    type: Customer,
    description: "Admin only. Stores a customer's tier (any customer id, registered here or at the identity provider); it wins over the token's claim.",
    authScopes: { admin: true },
    args: { customerId: t.arg.id({ required: true }), tier: t.arg({ type: CustomerTier, required: true }) },
    resolve: (_r, a, ctx) => tiers.setCustomerTier(a.customerId, a.tier, ctx),
  }),
}));
