import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIPv6 } from 'node:net';
import {
  getOperationAST,
  GraphQLIncludeDirective,
  GraphQLSkipDirective,
  getDirectiveValues,
  Kind,
  type DocumentNode,
  type FieldNode,
  type SelectionSetNode,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Context } from '../schema/context.js';
import type { Viewer } from '../services/auth.js';
import { normalizeEmail } from '../services/accounts.js';
import type { CustomerTier } from '../services/customer-tiers.js';
import { rateLimited } from '../services/errors.js';
import type { BucketCheck, BucketRule, RateBuckets } from '../services/rate-buckets.js';
import type { RateCheck, RateCounter, RateRule } from '../services/rate-counter.js';

/** One counter per (bucket, identity): e.g. every buying mutation of one customer shares a budget. */
export interface RateLimit {
  bucket: string;
  /** Mutation fields it covers, by name: a field added later is covered as soon as it exists. */
  fields: ReadonlySet<string>;
  by: 'email' | 'customer' | 'ip';
  rule: RateRule;
}

export const AUTH_FIELDS = ['login', 'register'] as const;
export const BUYING_FIELDS = [
  'purchase', 'reserve', 'confirmReservation', 'releaseReservation', 'cancelOrder', 'joinWaitlist', 'leaveWaitlist', 'joinQueue',
] as const;

/**
 * The limits the configuration asks for. Login and register per email are not here: they are
 * counted per (email, client address) with a per-email ceiling by LoginGuard (src/server/login-limit.ts).
 */
export function rateLimitsFromConfig(config: Config): RateLimit[] {
  if (!config.RATE_LIMIT_ENABLED) return [];
  const auth = new Set<string>(AUTH_FIELDS);
  return [
    { bucket: 'auth', fields: auth, by: 'ip', rule: config.RATE_LIMIT_AUTH_PER_IP },
  ];
}

/**
 * A token bucket (GCRA) per (bucket, identity) for buying and fairness mutations: per customer,
 * with the rule of the customer's tier; per client address, one rule whoever calls (an address
 * is shared by customers of every tier, so its bucket cannot depend on the caller's).
 */
export type BucketLimit = { bucket: string; fields: ReadonlySet<string> } & (
  | { by: 'customer'; rules: Readonly<Record<CustomerTier, BucketRule>> }
  | { by: 'ip'; rule: BucketRule }
);

/** The buying limits the configuration asks for. */
export function buyingLimitsFromConfig(config: Config): BucketLimit[] {
  if (!config.RATE_LIMIT_ENABLED) return [];
  const buying = new Set<string>(BUYING_FIELDS);
  const rules = { STANDARD: config.RATE_LIMIT_TIER_STANDARD, TRUSTED: config.RATE_LIMIT_TIER_TRUSTED, RESTRICTED: config.RATE_LIMIT_TIER_RESTRICTED };
  return [
    { bucket: 'buy', fields: buying, by: 'customer', rules },
    { bucket: 'buy', fields: buying, by: 'ip', rule: config.RATE_LIMIT_BUYING_PER_IP },
  ];
}

/**
 * Fields whose decision is one reserve script call: when such a field is the operation's only
 * limited field, its buckets are handed to the reserve call (context `rateChecks`) and charged
 * there, after the idempotency lookup (a replay draws no token), so the purchase decision stays
 * one Redis round trip. On Redis Cluster the engine charges them just before the script (see
 * StockEngine.reserve).
 */
export const FOLDED_FIELDS: ReadonlySet<string> = new Set(['purchase', 'reserve']);

export interface RootField {
  node: FieldNode;
  name: string;
  responseKey: string;
}

/**
 * Rate limits on mutation fields, before anything executes. A limited call answers HTTP 200 with
 * a GraphQL error (`extensions.code` RATE_LIMITED, `extensions.retryAfterSeconds`: when the call
 * would pass, rounded up to whole seconds) and nothing in the operation runs. Admins are never
 * limited. Every alias of a field counts, so one request cannot carry a hundred `login`s past the
 * per-email limit, nor two `purchase`s past one token (an operation refused draws no token).
 *
 * Not @envelop/rate-limiter: its store API is get-then-set of a timestamp list (not atomic even
 * with a custom store), it allows one rule per field (we need per-customer and per-IP), and its
 * error carries only a message, not the time until the window reopens.
 */
export function rateLimit(opts: {
  counter: RateCounter; limits: RateLimit[]; buckets: RateBuckets; bucketLimits: BucketLimit[];
  tierOf: (viewer: Viewer) => CustomerTier; trustProxyHops: number; log: Logger;
}): Plugin<Context> {
  const { counter, limits, buckets, bucketLimits, tierOf, trustProxyHops, log } = opts;
  if (limits.length === 0 && bucketLimits.length === 0) return {};
  const limitedFields = new Set([...limits, ...bucketLimits].flatMap((l) => [...l.fields]));

  return {
    onExecute({ args, setResultAndStopExecution, extendContext }) {
      const operation = getOperationAST(args.document, args.operationName);
      if (operation?.operation !== 'mutation') return;
      const variables = (args.variableValues ?? {}) as Record<string, unknown>;
      const fields = rootFields(operation.selectionSet, args.document, variables).filter((f) => limitedFields.has(f.name));
      if (fields.length === 0) return;
      const ctx = args.contextValue as { viewer?: Viewer | null; req?: IncomingMessage; extra?: { request?: IncomingMessage } };
      if (ctx.viewer?.role === 'admin') return;
      const ip = clientAddress(ctx.req ?? ctx.extra?.request, trustProxyHops);
      const checksOf = (field: RootField): RateCheck[] =>
        limits
          .filter((l) => l.fields.has(field.name))
          .flatMap((l) => {
            const identity = identify(l.by, field, variables, ctx.viewer ?? null, ip);
            // No identity on this axis (no token, no email argument): the other axes still apply.
            return identity === null ? [] : [counter.check(`${l.bucket}:${l.by}:${identity}`, l.rule)];
          });
      const bucketsOf = (field: RootField): BucketCheck[] =>
        bucketLimits
          .filter((l) => l.fields.has(field.name))
          .flatMap((l) => {
            const identity = identify(l.by, field, variables, ctx.viewer ?? null, ip);
            if (identity === null) return [];
            // The tier is read from memory (CustomerTiers): no I/O on the buying path.
            const rule = l.by === 'ip' ? l.rule : l.rules[tierOf(ctx.viewer!)];
            return [buckets.check(`${l.bucket}:${l.by}:${identity}`, rule)];
          });

      // The reserve call charges a lone purchase/reserve itself, after its idempotency lookup.
      if (fields.length === 1 && FOLDED_FIELDS.has(fields[0].name) && checksOf(fields[0]).length === 0) {
        extendContext({ rateChecks: bucketsOf(fields[0]) });
        return;
      }

      const charged: BucketCheck[][] = [];
      const checks = fields.map(async (field) => {
        const fieldBuckets = bucketsOf(field);
        const [results, verdict] = await Promise.all([Promise.all(checksOf(field).map((c) => counter.hit(c))), buckets.charge(fieldBuckets)]);
        if (verdict.allowed) charged.push(fieldBuckets);
        const waits = [...results.filter((r) => !r.allowed).map((r) => r.retryAfterMs), ...(verdict.allowed ? [] : [verdict.retryAfterMs])];
        if (waits.length === 0) return null;
        return rateLimited(Math.max(...waits), { nodes: [field.node], path: [field.responseKey] });
      });

      return Promise.all(checks).then(
        (errors) => {
          const refused = errors.filter((e) => e !== null);
          if (refused.length === 0) return;
          // Nothing of the operation runs: the tokens its other fields drew go back.
          void buckets.refund(charged.flat()).catch(() => undefined);
          // data: null keeps it a field error with HTTP 200, not a request error.
          setResultAndStopExecution({ data: null, errors: refused });
        },
        (err: unknown) => {
          // Redis down: buying fails on its own (stock lives there); locking everyone out of login would not help.
          log.warn({ err }, 'rate limiter unavailable; letting the call through');
        },
      );
    },
  };
}

function identify(by: RateLimit['by'], field: RootField, variables: Record<string, unknown>, viewer: Viewer | null, ip: string): string | null {
  if (by === 'ip') return ip;
  if (by === 'customer') return viewer ? viewer.id : null;
  const email = argumentValue(field.node, 'email', variables);
  // Hashed, so Redis never holds an email address.
  return typeof email === 'string' ? createHash('sha256').update(normalizeEmail(email)).digest('base64url').slice(0, 22) : null;
}

export function argumentValue(node: FieldNode, name: string, variables: Record<string, unknown>): unknown {
  const arg = node.arguments?.find((a) => a.name.value === name);
  if (!arg) return undefined;
  if (arg.value.kind === Kind.VARIABLE) return variables[arg.value.name.value];
  if (arg.value.kind === Kind.STRING) return arg.value.value;
  return undefined;
}

/** The operation's root fields as execution will see them: through fragments, minus @skip/@include'd ones. */
export function rootFields(set: SelectionSetNode, document: DocumentNode, variables: Record<string, unknown>, seen = new Set<string>()): RootField[] {
  const out: RootField[] = [];
  for (const sel of set.selections) {
    if (!included(sel, variables)) continue;
    if (sel.kind === Kind.FIELD) {
      out.push({ node: sel, name: sel.name.value, responseKey: sel.alias?.value ?? sel.name.value });
    } else if (sel.kind === Kind.INLINE_FRAGMENT) {
      out.push(...rootFields(sel.selectionSet, document, variables, seen));
    } else if (!seen.has(sel.name.value)) {
      seen.add(sel.name.value);
      const fragment = document.definitions.find((d) => d.kind === Kind.FRAGMENT_DEFINITION && d.name.value === sel.name.value);
      if (fragment?.kind === Kind.FRAGMENT_DEFINITION) out.push(...rootFields(fragment.selectionSet, document, variables, seen));
    }
  }
  return out;
}

function included(node: SelectionSetNode['selections'][number], variables: Record<string, unknown>): boolean {
  try {
    if (getDirectiveValues(GraphQLSkipDirective, node, variables)?.if === true) return false;
    if (getDirectiveValues(GraphQLIncludeDirective, node, variables)?.if === false) return false;
  } catch {
    // A bad directive variable fails execution anyway; count the field meanwhile.
  }
  return true;
}

/**
 * The caller's address: the socket's, or with `hops` trusted proxies the entry they appended to
 * X-Forwarded-For (entries further left are whatever the client claimed). IPv6 counts per /64,
 * the block one subscriber usually gets, so rotating addresses inside it does not help.
 */
export function clientAddress(req: IncomingMessage | undefined, hops: number): string {
  const socket = req?.socket?.remoteAddress ?? 'unknown';
  let address = socket;
  if (hops > 0) {
    const header = req?.headers['x-forwarded-for'];
    const forwarded = (Array.isArray(header) ? header.join(',') : header ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    const chain = [...forwarded, socket];
    address = chain[Math.max(0, chain.length - 1 - hops)];
  }
  return addressBlock(address);
}

function addressBlock(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  const bare = address.split('%')[0];
  if (!isIPv6(bare)) return address;
  const [head, tail] = bare.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail === undefined ? [] : tail ? tail.split(':') : [];
  const width = (gs: string[]) => gs.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  const zeros = Array<string>(Math.max(0, 8 - width(headGroups) - width(tailGroups))).fill('0');
  const groups = [...headGroups, ...zeros, ...tailGroups];
  return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
