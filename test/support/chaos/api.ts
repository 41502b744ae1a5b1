import type { GqlClient } from '../harness.js';

/** The GraphQL documents the chaos test sends: what a client of the contract would. */
export const DOCS = {
  createProduct: `mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }`,
  scheduleSale: `mutation($input: ScheduleSaleInput!) { scheduleSale(input: $input) { id items { id initialStock } } }`,
  purchase: `mutation($input: PurchaseInput!) { purchase(input: $input) { __typename
    ... on PurchaseSuccess { replayed order { id customerId quantity status idempotencyKey saleItem { id } } }
    ... on Rejected { code message retryAfterSeconds } } }`,
  reserve: `mutation($input: ReserveInput!) { reserve(input: $input) { __typename
    ... on ReserveSuccess { replayed reservation { id status quantity } }
    ... on Rejected { code message retryAfterSeconds } } }`,
  confirm: `mutation($id: ID!) { confirmReservation(reservationId: $id) { __typename
    ... on PurchaseSuccess { replayed order { id customerId quantity status idempotencyKey saleItem { id } } }
    ... on Rejected { code message retryAfterSeconds } } }`,
  release: `mutation($id: ID!) { releaseReservation(reservationId: $id) { __typename
    ... on ReleaseSuccess { reservation { id status endReason } }
    ... on Rejected { code message } } }`,
  cancelOrder: `mutation($id: ID!) { cancelOrder(orderId: $id) { __typename
    ... on CancelOrderSuccess { order { id status } }
    ... on Rejected { code message } } }`,
  joinWaitlist: `mutation($item: ID!, $qty: Int!) { joinWaitlist(saleItemId: $item, quantity: $qty) { __typename
    ... on WaitlistEntry { id status quantity position joinedAt offer { id } }
    ... on Rejected { code message } } }`,
  leaveWaitlist: `mutation($item: ID!) { leaveWaitlist(saleItemId: $item) { __typename
    ... on WaitlistEntry { id status joinedAt }
    ... on Rejected { code message } } }`,
  adjustStock: `mutation($item: ID!, $delta: Int!) { adjustStock(saleItemId: $item, delta: $delta, reason: "chaos") { id } }`,
  pauseSale: `mutation($id: ID!) { pauseSale(id: $id) { id status } }`,
  resumeSale: `mutation($id: ID!) { resumeSale(id: $id) { id status } }`,
  cancelSale: `mutation($id: ID!) { cancelSale(id: $id) { id status } }`,
  levels: `query($id: ID!) { sale(id: $id) { status items { id available reserved sold } } }`,
  myReservations: `query($sale: ID!) { me { reservations(saleId: $sale) { id status quantity fromWaitlist saleItem { id } order { id } } } }`,
  myHeld: `query($sale: ID!) { me { reservations(saleId: $sale) { id status fromWaitlist } } }`,
  myOrders: `query($sale: ID!) { me { orders(saleId: $sale, first: 100) { edges { node { id status } } } } }`,
  myWaitlist: `query($sale: ID!) { me { waitlist(saleId: $sale) { id status quantity joinedAt saleItem { id } offer { id } } } }`,
} as const;

export type Answer =
  | { kind: 'data'; status: number; data: any; errors: GqlError[] }
  | { kind: 'lost'; message: string };

export interface GqlError {
  message: string;
  extensions?: { code?: string; [k: string]: unknown };
}

/** Sends one operation; a connection that died without an answer is `lost`, never thrown. */
export async function send(client: GqlClient, doc: string, variables: Record<string, unknown>, token?: string, timeoutMs = 30_000): Promise<Answer> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const res = await Promise.race([
      client.raw(JSON.stringify({ query: doc, variables }), token ? { authorization: `Bearer ${token}` } : {}),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs))),
    ]);
    let parsed: { data?: unknown; errors?: GqlError[] };
    try {
      parsed = JSON.parse(res.body);
    } catch {
      parsed = { errors: [{ message: `unparsable body: ${res.body.slice(0, 200)}`, extensions: { code: 'UNPARSABLE' } }] };
    }
    return { kind: 'data', status: res.status, data: parsed.data ?? null, errors: parsed.errors ?? [] };
  } catch (err) {
    return { kind: 'lost', message: (err as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

/** The codes of an answer's GraphQL errors (INTERNAL_SERVER_ERROR when one has none). */
export function errorCodes(a: Answer): string[] {
  if (a.kind !== 'data') return [];
  return a.errors.map((e) => String(e.extensions?.code ?? 'INTERNAL_SERVER_ERROR'));
}

export function brief(a: Answer): string {
  if (a.kind === 'lost') return `lost (${a.message})`;
  const errs = a.errors.length ? ` errors=${JSON.stringify(a.errors.map((e) => `${e.extensions?.code ?? '?'}: ${e.message}`))}` : '';
  return `${a.status} ${JSON.stringify(a.data)}${errs}`.slice(0, 600);
}
