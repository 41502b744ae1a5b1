// The storefront flow, for frontend teams to copy: sign in (a pasted token, or register/login),
// join the waiting room when the sale has one and wait for admission, buy with an idempotency
// key made once per click, and list the customer's orders. Only the public API is used.
import { GraphqlError, clockTime, duration, gql, h, measureClockOffset, money, randomKey, saleIdFromPath, setText, sleep, subscribe, wsClient } from './api.js';

const SALE = `query ShopSale($id: ID!) {
  sale(id: $id) { id name status startsAt endsAt currency perUserLimit waitingRoom
    items { id priceCents available product { name priceCents } } } }`;
const STOCK = `subscription ShopStock($saleId: ID!) {
  stockChanged(saleId: $saleId) { status version items { saleItemId available } } }`;
const ME = `query Me { me { id } }`;
const REGISTER = `mutation Register($email: String!, $password: String!) { register(email: $email, password: $password) { token customerId } }`;
const LOGIN = `mutation Login($email: String!, $password: String!) { login(email: $email, password: $password) { token customerId } }`;
const TICKET_FIELDS = `status position admissionToken admissionExpiresAt estimatedWaitSeconds`;
const JOIN_QUEUE = `mutation JoinQueue($saleId: ID!) { joinQueue(saleId: $saleId) {
  __typename ... on QueueTicket { ${TICKET_FIELDS} } ... on Rejected { code message } } }`;
const MY_TICKET = `query MyTicket($saleId: ID!) { me { queueTicket(saleId: $saleId) { ${TICKET_FIELDS} } } }`;
const QUEUE_CHANGED = `subscription QueueChanged($saleId: ID!) { queueChanged(saleId: $saleId) { ${TICKET_FIELDS} } }`;
const PURCHASE = `mutation Purchase($input: PurchaseInput!) { purchase(input: $input) {
  __typename
  ... on PurchaseSuccess { replayed order { id quantity totalCents status } }
  ... on Rejected { code message retryAfterSeconds available } } }`;
const MY_ORDERS = `query MyOrders($saleId: ID) { me { orders(saleId: $saleId, first: 20) { edges { node {
  id quantity totalCents status createdAt saleItem { id product { name } } } } } } }`;

/** Kept per tab: a reload keeps you signed in, closing the tab forgets the token. */
const TOKEN_KEY = 'flashsale.token';
/** The email signed in with (register/login), shown instead of the customer id; none for a pasted token. */
const EMAIL_KEY = 'flashsale.email';
/** Attempts per click for answers that say "try again" (network loss, 5xx, RATE_LIMITED, TEMPORARILY_UNAVAILABLE). */
const MAX_ATTEMPTS = 5;
/** Polling is the fallback when the queue subscription is unavailable, and a slow backstop when it works. */
const QUEUE_POLL_MS = 2000;
const QUEUE_BACKSTOP_MS = 15_000;

const STATUS_WORDS = { SCHEDULED: 'Scheduled', ACTIVE: 'On sale', PAUSED: 'Paused', SOLD_OUT: 'Sold out', ENDED: 'Ended', CANCELLED: 'Cancelled' };

const $ = (id) => document.getElementById(id);

const state = {
  saleId: saleIdFromPath(),
  sale: null,
  clockOffset: 0,
  status: null,
  stockVersion: -1,
  /** saleItemId → { available, bought, limitHit, button, availableText } (bought: this customer's confirmed units; limitHit: the server answered LIMIT_EXCEEDED) */
  items: new Map(),
  token: null,
  customerId: null,
  email: null,
  ticket: null,
  admissionToken: null,
  /** Stops the current queue watch (subscription and polling). */
  stopQueueWatch: null,
  buying: false,
};

function showProblem(text) {
  setText($('problem'), text);
  $('problem').hidden = !text;
}

function notice(text, kind = 'info') {
  const node = $('buy-result');
  node.dataset.kind = kind;
  setText(node, text);
  node.hidden = !text;
}

// ---------------------------------------------------------------- the sale

function renderSale(sale) {
  document.title = `${sale.name} · storefront`;
  setText($('sale-name'), sale.name);
  setText($('sale-window'), `${new Date(sale.startsAt).toLocaleString()} → ${new Date(sale.endsAt).toLocaleString()} · at most ${sale.perUserLimit} per customer and item`);
  $('queue').hidden = !sale.waitingRoom;
  const offers = $('offers');
  offers.replaceChildren();
  for (const item of sale.items) {
    const button = h('button', { type: 'button', 'data-buy': item.id, onclick: () => buy(item) }, 'Buy 1');
    const availableText = h('span', { 'data-field': 'available' });
    offers.append(
      h('div', { class: 'offer', 'data-item-id': item.id },
        h('div', {},
          h('h2', {}, item.product.name),
          h('span', { class: 'price' }, money(item.priceCents, sale.currency), ' ', h('s', {}, money(item.product.priceCents, sale.currency)), ' · ', availableText, ' left'),
        ),
        button,
      ),
    );
    state.items.set(item.id, { available: item.available, bought: 0, limitHit: false, button, availableText });
  }
  renderStock();
}

function renderStock() {
  for (const item of state.items.values()) setText(item.availableText, item.available);
  updateButtons();
}

function renderStatus(status) {
  if (!status) return;
  state.status = status;
  $('status').dataset.status = status;
  setText($('status'), STATUS_WORDS[status] ?? status);
  updateButtons();
}

function tickCountdown() {
  const now = Date.now() + state.clockOffset;
  const starts = Date.parse(state.sale.startsAt);
  if (now < starts) setText($('countdown'), `Starts in ${duration(starts - now)} (at ${clockTime(starts)}).`);
  else if (state.status === 'ENDED' || state.status === 'CANCELLED') setText($('countdown'), 'This sale is over.');
  else setText($('countdown'), '');
}

/**
 * Buying is offered when signed in, admitted (waiting-room sales), not over, in stock, below the
 * customer's limit for the item, and no other click is in flight.
 */
function updateButtons() {
  const over = state.status === 'ENDED' || state.status === 'CANCELLED';
  const admitted = !state.sale?.waitingRoom || Boolean(state.admissionToken);
  for (const item of state.items.values()) {
    const atLimit = Boolean(state.token) && state.sale != null && (item.bought >= state.sale.perUserLimit || item.limitHit);
    const soldOut = item.available <= 0;
    item.button.disabled = !state.token || !admitted || over || soldOut || atLimit || state.buying;
    item.button.dataset.limitReached = String(atLimit);
    const label = atLimit ? 'Limit reached' : soldOut ? 'Sold out' : 'Buy 1';
    if (item.button.textContent !== label) item.button.textContent = label;
    item.button.title = atLimit ? `You have bought the most one customer may (${state.sale.perUserLimit}).` : '';
  }
  $('join-queue').disabled = !state.token || over || state.ticket?.status === 'ADMITTED' || state.ticket?.status === 'WAITING' || state.ticket?.status === 'PENDING';
}

// ---------------------------------------------------------------- signing in

async function signIn(token, email = null) {
  let me;
  try {
    ({ me } = await gql(ME, {}, token));
  } catch (err) {
    me = null;
    if (!(err instanceof GraphqlError)) throw err;
  }
  if (!me) {
    notice('That token is invalid or expired.', 'error');
    return false;
  }
  state.token = token;
  state.customerId = me.id;
  state.email = email;
  sessionStorage.setItem(TOKEN_KEY, token);
  if (email) sessionStorage.setItem(EMAIL_KEY, email);
  else sessionStorage.removeItem(EMAIL_KEY);
  // Whom the customer knows themselves as: the email they signed in with, else the token's id.
  setText($('who'), `Signed in as ${email ?? me.id}.`);
  $('token-form').hidden = true;
  $('account-details').hidden = true;
  $('sign-out').hidden = false;
  notice('');
  updateButtons();
  await loadOrders();
  if (state.sale.waitingRoom) {
    const data = await gql(MY_TICKET, { saleId: state.saleId }, token);
    if (data.me?.queueTicket) onTicket(data.me.queueTicket);
  }
  return true;
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(EMAIL_KEY);
  state.stopQueueWatch?.();
  Object.assign(state, { token: null, customerId: null, email: null, ticket: null, admissionToken: null, stopQueueWatch: null });
  for (const item of state.items.values()) Object.assign(item, { bought: 0, limitHit: false });
  setText($('who'), 'Not signed in.');
  $('token-form').hidden = false;
  $('account-details').hidden = false;
  $('sign-out').hidden = true;
  $('orders').replaceChildren();
  $('no-orders').hidden = false;
  renderTicket();
  updateButtons();
}

async function onAccountSubmit(event) {
  event.preventDefault();
  const mutation = event.submitter?.value === 'login' ? LOGIN : REGISTER;
  const field = mutation === LOGIN ? 'login' : 'register';
  const email = $('email').value.trim();
  try {
    const data = await gql(mutation, { email, password: $('password').value });
    $('password').value = '';
    await signIn(data[field].token, email);
  } catch (err) {
    notice(err instanceof GraphqlError && err.code === 'RATE_LIMITED' ? `Too many attempts; try again in ${err.retryAfterSeconds ?? 60} s.` : err.message, 'error');
  }
}

// ---------------------------------------------------------------- waiting room

async function joinQueue() {
  $('join-queue').disabled = true;
  try {
    const { joinQueue: result } = await gql(JOIN_QUEUE, { saleId: state.saleId }, state.token);
    if (result.__typename === 'Rejected') {
      setText($('queue-state'), result.message);
      return;
    }
    onTicket(result);
  } catch (err) {
    setText($('queue-state'), `Could not join the queue: ${err.message}`);
  } finally {
    updateButtons();
  }
}

function onTicket(ticket) {
  state.ticket = ticket;
  if (ticket.status === 'ADMITTED' && ticket.admissionToken) {
    state.admissionToken = ticket.admissionToken;
    state.stopQueueWatch?.();
    state.stopQueueWatch = null;
  } else {
    state.admissionToken = null;
    if ((ticket.status === 'PENDING' || ticket.status === 'WAITING') && !state.stopQueueWatch) watchQueue();
  }
  renderTicket();
  updateButtons();
}

function renderTicket() {
  const t = state.ticket;
  const node = $('queue-state');
  node.dataset.queueStatus = t?.status ?? '';
  if (!t) setText(node, 'This sale lets buyers in through a queue. Join it to get an admission token.');
  else if (t.status === 'PENDING') setText(node, 'You are in the pre-queue. At the start everyone in it gets a random place, so joining earlier gives no advantage.');
  else if (t.status === 'WAITING') setText(node, `Position ${t.position ?? '?'} in the queue${t.estimatedWaitSeconds != null ? `, about ${duration(t.estimatedWaitSeconds * 1000)} to go` : ''}. Keep this page open.`);
  else if (t.status === 'ADMITTED') setText(node, `You are in! Buy before ${t.admissionExpiresAt ? clockTime(t.admissionExpiresAt) : 'your admission expires'}.`);
  else if (t.status === 'EXPIRED') setText(node, 'Your admission expired unused. Join the queue again.');
  else setText(node, t.status);
}

/**
 * Waits for admission: queueChanged pushes the ticket (admission at once), and polling
 * `me.queueTicket` covers a server or proxy without that subscription. Polling stays slow while
 * the subscription delivers, so a crowd of waiting pages does not become load by itself.
 */
function watchQueue() {
  const token = state.token;
  let stopped = false;
  let pushed = false;
  const client = wsClient({ token });
  const unsubscribe = subscribe(client, QUEUE_CHANGED, { saleId: state.saleId }, {
    next: (data) => {
      pushed = true;
      if (!stopped) onTicket(data.queueChanged);
    },
    error: () => {
      pushed = false;
    },
  });
  const poll = async () => {
    while (!stopped) {
      await sleep(pushed ? QUEUE_BACKSTOP_MS : QUEUE_POLL_MS);
      if (stopped) return;
      try {
        const data = await gql(MY_TICKET, { saleId: state.saleId }, token);
        if (!stopped && data.me?.queueTicket) onTicket(data.me.queueTicket);
      } catch {
        // The next round tries again; the subscription may still deliver meanwhile.
      }
    }
  };
  void poll();
  state.stopQueueWatch = () => {
    stopped = true;
    unsubscribe();
    void client.dispose();
  };
}

// ---------------------------------------------------------------- buying

function deliveryInput() {
  const value = (id) => $(id).value.trim();
  if (!value('d-name')) return undefined;
  return {
    name: value('d-name'), phone: value('d-phone'), addressLine1: value('d-address'),
    city: value('d-city'), postalCode: value('d-postal'), country: value('d-country').toUpperCase(),
  };
}

/** Network failures and 5xx leave the outcome unknown; retrying with the same key is what makes that safe. */
function isRetryable(err) {
  if (!(err instanceof GraphqlError)) return true;
  return err.code === 'RATE_LIMITED' || /^HTTP_5/.test(err.code ?? '');
}

async function buy(item) {
  // One key per click, made here and reused by every retry of this click: if an answer is lost
  // on the way back, the retry returns the same order (replayed) instead of buying a second one.
  const idempotencyKey = randomKey();
  const input = { saleItemId: item.id, quantity: 1, idempotencyKey, admissionToken: state.admissionToken ?? undefined, delivery: deliveryInput() };
  state.buying = true;
  updateButtons();
  notice(`Buying ${item.product.name}…`);
  try {
    for (let attempt = 1; ; attempt++) {
      let result;
      try {
        ({ purchase: result } = await gql(PURCHASE, { input }, state.token));
      } catch (err) {
        if (isRetryable(err) && attempt < MAX_ATTEMPTS) {
          const waitSeconds = err instanceof GraphqlError && err.retryAfterSeconds ? err.retryAfterSeconds : 2 ** (attempt - 1);
          notice(`The server is busy; trying again in ${waitSeconds} s (same order, no double charge)…`);
          await sleep(waitSeconds * 1000);
          continue;
        }
        if (err instanceof GraphqlError && err.code === 'UNAUTHENTICATED') signOut();
        notice(err.message, 'error');
        return;
      }
      if (result.__typename === 'PurchaseSuccess') {
        const order = result.order;
        notice(`Order ${order.id} confirmed: ${order.quantity} × ${item.product.name}, ${money(order.totalCents, state.sale.currency)}, cash on delivery.${result.replayed ? ' (already placed)' : ''}`, 'success');
        await loadOrders();
        return;
      }
      if (result.code === 'TEMPORARILY_UNAVAILABLE' && attempt < MAX_ATTEMPTS) {
        notice(`${result.message} Trying again…`);
        await sleep((result.retryAfterSeconds ?? 1) * 1000);
        continue;
      }
      if (result.code === 'LIMIT_EXCEEDED') {
        // Bought or held elsewhere (another tab, a reservation): the server's word stands.
        const entry = state.items.get(item.id);
        if (entry) entry.limitHit = true;
      }
      if (result.code === 'NOT_ADMITTED') {
        state.admissionToken = null;
        state.ticket = null;
        renderTicket();
      }
      notice(result.message, 'error');
      return;
    }
  } finally {
    state.buying = false;
    updateButtons();
  }
}

// ---------------------------------------------------------------- orders

async function loadOrders() {
  if (!state.token) return;
  const data = await gql(MY_ORDERS, { saleId: state.saleId }, state.token);
  const orders = data.me?.orders.edges.map((e) => e.node) ?? [];
  const bought = new Map();
  for (const o of orders) if (o.status !== 'CANCELLED') bought.set(o.saleItem.id, (bought.get(o.saleItem.id) ?? 0) + o.quantity);
  for (const [id, item] of state.items) item.bought = bought.get(id) ?? 0;
  updateButtons();
  $('orders').replaceChildren(
    ...orders.map((o) =>
      h('li', { 'data-order-id': o.id, 'data-status': o.status },
        h('span', {}, `${o.quantity} × ${o.saleItem.product.name}`),
        h('span', { class: 'mono' }, o.id),
        h('span', {}, money(o.totalCents, state.sale.currency)),
        h('span', {}, o.status),
        h('span', { class: 'muted' }, clockTime(o.createdAt)),
      ),
    ),
  );
  $('no-orders').hidden = orders.length > 0;
}

// ---------------------------------------------------------------- start

function setConnection(name) {
  $('connection').dataset.state = name;
  setText($('connection'), name);
}

async function main() {
  $('live-link').href = `/live/${encodeURIComponent(state.saleId)}`;
  let data;
  for (let attempt = 0; ; attempt++) {
    try {
      [state.clockOffset, data] = await Promise.all([measureClockOffset().catch(() => 0), gql(SALE, { id: state.saleId })]);
      showProblem('');
      break;
    } catch (err) {
      showProblem(`Cannot reach the API (${err.message}); retrying…`);
      await sleep(Math.min(5000, 500 * 2 ** attempt));
    }
  }
  if (!data.sale) {
    setText($('sale-name'), 'No such sale');
    showProblem(`There is no sale with the id “${state.saleId}”.`);
    return;
  }
  state.sale = data.sale;
  renderSale(data.sale);
  renderStatus(data.sale.status);
  tickCountdown();
  setInterval(tickCountdown, 250);

  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('token').value.trim().replace(/^Bearer\s+/i, '');
    if (token) void signIn(token).catch((err) => notice(err.message, 'error'));
  });
  $('account-form').addEventListener('submit', (event) => void onAccountSubmit(event));
  $('sign-out').addEventListener('click', signOut);
  $('join-queue').addEventListener('click', () => void joinQueue());

  // Stock and status need no token: one anonymous connection for the whole page.
  const client = wsClient({ onState: setConnection });
  subscribe(client, STOCK, { saleId: state.saleId }, {
    next: ({ stockChanged: update }) => {
      if (update.version < state.stockVersion) return;
      state.stockVersion = update.version;
      for (const level of update.items) {
        const item = state.items.get(level.saleItemId);
        if (item) item.available = level.available;
      }
      renderStock();
      renderStatus(update.status);
    },
    error: (errors) => showProblem(`Live stock unavailable: ${errors.map((e) => e.message).join('; ')}`),
  });

  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) await signIn(saved, sessionStorage.getItem(EMAIL_KEY)).catch(() => signOut());
}

main().catch((err) => showProblem(`The page failed: ${err.message}`));
