// Shared by the live page and the storefront: GraphQL over HTTP, graphql-ws subscriptions, and DOM
// building that only ever sets text (never HTML), so nothing the server sends can become markup.
// Plain browser JavaScript on purpose: these files are served as they are, with no build step.

export const GRAPHQL_PATH = '/graphql';

/** A GraphQL error answer; `code` is extensions.code (UNAUTHENTICATED, RATE_LIMITED, ...). */
export class GraphqlError extends Error {
  constructor(errors) {
    super(errors[0]?.message ?? 'The server answered with an error.');
    this.errors = errors;
    this.code = errors[0]?.extensions?.code ?? null;
    this.retryAfterSeconds = errors[0]?.extensions?.retryAfterSeconds ?? null;
  }
}

/**
 * POSTs one operation and resolves with its `data`. Throws GraphqlError when the answer carries
 * errors and TypeError (from fetch) when the network failed, so callers can tell "the server said
 * no" from "we do not know what happened" (the case an idempotency key exists for).
 */
export async function gql(query, variables = {}, token = null) {
  const headers = { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(GRAPHQL_PATH, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  let body;
  try {
    body = await res.json();
  } catch {
    throw new GraphqlError([{ message: `The server answered HTTP ${res.status}.`, extensions: { code: `HTTP_${res.status}` } }]);
  }
  if (body.errors?.length) throw new GraphqlError(body.errors);
  return body.data;
}

/**
 * A graphql-ws client (protocol `graphql-transport-ws`) on this page's origin. It retries forever:
 * a phone on a train loses its connection, and since every subscription's first event is the
 * current state, resubscribing after a reconnect is all the recovery a page needs.
 */
export function wsClient({ token = null, onState = () => {} } = {}) {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${GRAPHQL_PATH}`;
  return globalThis.graphqlWs.createClient({
    url,
    lazy: true,
    connectionParams: token ? { authorization: `Bearer ${token}` } : {},
    retryAttempts: Infinity,
    shouldRetry: () => true,
    on: {
      connecting: () => onState('connecting'),
      connected: () => onState('live'),
      closed: () => onState('reconnecting'),
    },
  });
}

/** Subscribes and calls `next(data)` per event; `error(errors)` for a refused subscription. Returns the unsubscribe function. */
export function subscribe(client, query, variables, { next, error = () => {} }) {
  return client.subscribe(
    { query, variables },
    {
      next: (result) => {
        if (result.errors?.length) error(result.errors);
        if (result.data) next(result.data);
      },
      error: (e) => error(Array.isArray(e) ? e : [{ message: String(e?.reason || e?.message || 'the connection failed') }]),
      complete: () => {},
    },
  );
}

/**
 * Creates an element. String and number children become text nodes and attribute values go
 * through setAttribute, so server data is never parsed as HTML (no innerHTML anywhere).
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Sets an element's text (only when it changed, so the page does not relayout for nothing). */
export function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
}

/** The sale id in `/live/<saleId>` or `/live/<saleId>/shop`. */
export function saleIdFromPath() {
  const segment = location.pathname.split('/')[2] ?? '';
  try {
    return decodeURIComponent(segment);
  } catch {
    return '';
  }
}

/**
 * Offset of the server's clock from this device's (ms), from one `serverTime` query: countdowns
 * must follow the server, which decides when the sale starts, not a phone set 40 s fast.
 */
export async function measureClockOffset() {
  const sentAt = Date.now();
  const data = await gql('query ServerTime { serverTime }');
  const receivedAt = Date.now();
  return Date.parse(data.serverTime) - (sentAt + receivedAt) / 2;
}

/** Integer minor units (cents, paise) as money in the sale's currency. */
export function money(minor, currency) {
  try {
    const format = new Intl.NumberFormat(undefined, { style: 'currency', currency });
    return format.format(minor / 10 ** format.resolvedOptions().maximumFractionDigits);
  } catch {
    return `${minor} ${currency}`;
  }
}

/** "6 d 23:58:57", "1:02:03", "2:03" or "4.2 s" */
export function duration(ms) {
  const negative = ms < 0;
  const abs = Math.abs(ms);
  if (abs < 10_000) return `${negative ? '-' : ''}${(abs / 1000).toFixed(1)} s`;
  const total = Math.floor(abs / 1000);
  const days = Math.floor(total / 86_400);
  const hours = Math.floor((total % 86_400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, '0');
  const body = days > 0
    ? `${days} d ${String(hours).padStart(2, '0')}:${String(minutes).padStart(2, '0')}:${seconds}`
    : hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${seconds}` : `${minutes}:${seconds}`;
  return `${negative ? '-' : ''}${body}`;
}

/** Local wall-clock time with milliseconds, e.g. "14:03:07.412". */
export function clockTime(date) {
  const d = new Date(date);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** 32 random hex characters; works on plain http too, where crypto.randomUUID does not exist. */
export function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
