// The live sale page: one query for what does not change, then stockChanged and saleStatusChanged
// over graphql-ws. Every figure is drawn from the latest event; nothing is counted locally, so a
// missed or coalesced event can never make the page drift from the server.
import { clockTime, duration, gql, h, measureClockOffset, money, saleIdFromPath, setText, sleep, subscribe, wsClient } from './api.js';

const SALE = `query LiveSale($id: ID!) {
  sale(id: $id) { id name status startsAt endsAt soldOutAt currency waitingRoom
    items { id initialStock priceCents available reserved sold product { name } } } }`;
const STOCK = `subscription LiveStock($saleId: ID!) {
  stockChanged(saleId: $saleId) { status version at items { saleItemId available reserved sold } } }`;
const STATUS = `subscription LiveStatus($saleId: ID!) {
  saleStatusChanged(saleId: $saleId) { status startsAt endsAt soldOutAt } }`;

/** Orders per second are measured over this trailing window of server time. */
const RATE_WINDOW_MS = 1000;
const TICK_MS = 250;
const CHART_POINTS = 120; // 30 s of ticks

const STATUS_WORDS = { SCHEDULED: 'Scheduled', ACTIVE: 'Active', PAUSED: 'Paused', SOLD_OUT: 'Sold out', ENDED: 'Ended', CANCELLED: 'Cancelled' };

const $ = (id) => document.getElementById(id);

const state = {
  saleId: saleIdFromPath(),
  sale: null,
  /** saleItemId → { initialStock, available, reserved, sold, nodes } */
  items: new Map(),
  version: -1,
  clockOffset: 0,
  /** { at, sold } per stock event, in server time; enough to look one window back. */
  samples: [],
  peakRate: 0,
  history: [],
  status: null,
  soldOutAt: null,
  soldOutSeen: null,
};

const serverNow = () => Date.now() + state.clockOffset;

function showProblem(text) {
  const node = $('problem');
  setText(node, text);
  node.hidden = !text;
}

async function loadSale() {
  // The page may be opened before the server is up (the demo prints the address first): keep trying.
  for (let attempt = 0; ; attempt++) {
    try {
      const [offset, data] = await Promise.all([measureClockOffset().catch(() => 0), gql(SALE, { id: state.saleId })]);
      state.clockOffset = offset;
      showProblem('');
      return data.sale;
    } catch (err) {
      showProblem(`Cannot reach the API (${err.message}); retrying…`);
      await sleep(Math.min(5000, 500 * 2 ** attempt));
    }
  }
}

function renderSale(sale) {
  document.title = `${sale.name} · live`;
  setText($('sale-name'), sale.name);
  const starts = new Date(sale.startsAt);
  const ends = new Date(sale.endsAt);
  setText($('sale-window'), `${starts.toLocaleString()} → ${ends.toLocaleString()}${sale.waitingRoom ? ' · waiting room' : ''}`);
  const list = $('items');
  list.replaceChildren();
  for (const item of sale.items) {
    const nodes = {
      sold: h('span', { class: 'seg sold' }),
      reserved: h('span', { class: 'seg reserved' }),
      available: h('span', { class: 'seg available' }),
      availableText: h('dd', { 'data-field': 'available' }),
      reservedText: h('dd', { 'data-field': 'reserved' }),
      soldText: h('dd', { 'data-field': 'sold' }),
      totalText: h('dd', { 'data-field': 'total' }),
    };
    nodes.bar = h('div', { class: 'bar', role: 'img' }, nodes.sold, nodes.reserved, nodes.available);
    list.append(
      h('article', { class: 'item', 'data-item-id': item.id },
        h('header', {}, h('h2', {}, item.product.name), h('span', { class: 'price' }, money(item.priceCents, sale.currency))),
        nodes.bar,
        h('dl', { class: 'counts' },
          h('div', { class: 'count available' }, h('dt', {}, 'Available'), nodes.availableText),
          h('div', { class: 'count reserved' }, h('dt', {}, 'Reserved'), nodes.reservedText),
          h('div', { class: 'count sold' }, h('dt', {}, 'Sold'), nodes.soldText),
          h('div', { class: 'count total' }, h('dt', {}, 'Of'), nodes.totalText),
        ),
      ),
    );
    state.items.set(item.id, { initialStock: item.initialStock, available: item.available, reserved: item.reserved, sold: item.sold, nodes });
  }
}

function renderItems() {
  let available = 0;
  let sold = 0;
  let total = 0;
  for (const item of state.items.values()) {
    // Added stock can lift the sum above the initial figure; the bar is always the whole.
    const whole = Math.max(item.initialStock, item.available + item.reserved + item.sold, 1);
    const pct = (n) => `${((100 * n) / whole).toFixed(2)}%`;
    item.nodes.sold.style.width = pct(item.sold);
    item.nodes.reserved.style.width = pct(item.reserved);
    item.nodes.available.style.width = pct(item.available);
    item.nodes.bar.setAttribute('aria-label', `${item.available} available, ${item.reserved} reserved, ${item.sold} sold of ${whole}`);
    setText(item.nodes.availableText, item.available);
    setText(item.nodes.reservedText, item.reserved);
    setText(item.nodes.soldText, item.sold);
    setText(item.nodes.totalText, whole);
    available += item.available;
    sold += item.sold;
    total += whole;
  }
  setText($('total-available'), available);
  setText($('total-sub'), `${sold} sold of ${total}`);
}

function renderStatus(status) {
  if (!status) return;
  state.status = status;
  const node = $('status');
  node.dataset.status = status;
  setText(node, STATUS_WORDS[status] ?? status);
  if (status !== 'SOLD_OUT') state.soldOutSeen = null;
  else if (state.soldOutSeen == null) state.soldOutSeen = serverNow();
  renderSoldOut();
}

function renderSoldOut() {
  // The server's soldOutAt is the truth; the moment this page saw it is only a fallback.
  const at = state.soldOutAt ?? (state.status === 'SOLD_OUT' ? state.soldOutSeen : null);
  if (at == null) {
    setText($('sold-out'), state.status === 'SOLD_OUT' ? 'now' : '—');
    setText($('sold-out-after'), '');
    return;
  }
  setText($('sold-out'), clockTime(at));
  const start = Date.parse(state.sale.startsAt);
  const after = (at - start) / 1000;
  setText($('sold-out-after'), after >= 0 ? `${after.toFixed(2)} s after the start` : '');
}

function onStock(update) {
  // Events are ordered by version; a snapshot after a reconnect may repeat the last one.
  if (update.version < state.version) return;
  state.version = update.version;
  let sold = 0;
  for (const level of update.items) {
    const item = state.items.get(level.saleItemId);
    if (!item) continue;
    item.available = level.available;
    item.reserved = level.reserved;
    item.sold = level.sold;
  }
  for (const item of state.items.values()) sold += item.sold;
  state.samples.push({ at: Date.parse(update.at), sold });
  renderItems();
  renderStatus(update.status);
  setText($('version'), `version ${update.version} · ${clockTime(update.at)}`);
}

function onStatus(sale) {
  state.sale.startsAt = sale.startsAt;
  state.sale.endsAt = sale.endsAt;
  state.soldOutAt = sale.soldOutAt ? Date.parse(sale.soldOutAt) : null;
  renderStatus(sale.status);
}

/** Units sold in the trailing window, per second: sold(now) − sold(now − window), from the event stream. */
function currentRate(now) {
  const samples = state.samples;
  if (samples.length === 0) return 0;
  const from = now - RATE_WINDOW_MS;
  let base = samples[0];
  for (const s of samples) {
    if (s.at <= from) base = s;
    else break;
  }
  // Only one sample before the window is ever needed again.
  const firstKept = samples.indexOf(base);
  if (firstKept > 0) samples.splice(0, firstKept);
  const last = samples[samples.length - 1];
  return Math.max(0, ((last.sold - base.sold) * 1000) / RATE_WINDOW_MS);
}

function tick() {
  const now = serverNow();
  const rate = currentRate(now);
  state.peakRate = Math.max(state.peakRate, rate);
  setText($('rate'), Math.round(rate));
  setText($('rate-peak'), state.peakRate > 0 ? `peak ${Math.round(state.peakRate)}/s` : '');
  state.history.push(rate);
  if (state.history.length > CHART_POINTS) state.history.shift();
  drawChart();

  const sale = state.sale;
  const starts = Date.parse(sale.startsAt);
  const ends = Date.parse(sale.endsAt);
  if (state.status === 'ENDED' || state.status === 'CANCELLED' || now >= ends) {
    setText($('clock-label'), 'Ended');
    setText($('countdown'), clockTime(Math.min(now, ends)));
    setText($('clock-sub'), '');
  } else if (now < starts) {
    setText($('clock-label'), 'Starts in');
    setText($('countdown'), duration(starts - now));
    setText($('clock-sub'), `at ${clockTime(starts)}`);
  } else {
    setText($('clock-label'), 'Running for');
    setText($('countdown'), duration(now - starts));
    setText($('clock-sub'), `ends in ${duration(ends - now)}`);
  }
}

function drawChart() {
  const canvas = $('rate-chart');
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const top = Math.max(10, state.peakRate);
  const barWidth = width / CHART_POINTS;
  ctx.fillStyle = '#3fb68b';
  state.history.forEach((rate, i) => {
    const x = width - (state.history.length - i) * barWidth;
    const barHeight = ((height - 14) * rate) / top;
    ctx.fillRect(x + 0.5, height - barHeight, Math.max(1, barWidth - 1), barHeight);
  });
  ctx.fillStyle = '#8b93a7';
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillText(`${Math.round(top)}/s`, 4, 11);
}

function setConnection(stateName) {
  const node = $('connection');
  node.dataset.state = stateName;
  setText(node, stateName);
}

async function main() {
  $('shop-link').href = `/live/${encodeURIComponent(state.saleId)}/shop`;
  const sale = await loadSale();
  if (!sale) {
    setText($('sale-name'), 'No such sale');
    showProblem(`There is no sale with the id “${state.saleId}”.`);
    setConnection('idle');
    return;
  }
  state.sale = sale;
  if (sale.soldOutAt) state.soldOutAt = Date.parse(sale.soldOutAt);
  renderSale(sale);
  renderItems();
  renderStatus(sale.status);
  tick();
  setInterval(tick, TICK_MS);

  const client = wsClient({ onState: setConnection });
  const refused = (errors) => showProblem(`The server refused a subscription: ${errors.map((e) => e.message).join('; ')}`);
  subscribe(client, STOCK, { saleId: state.saleId }, { next: (d) => onStock(d.stockChanged), error: refused });
  subscribe(client, STATUS, { saleId: state.saleId }, { next: (d) => onStatus(d.saleStatusChanged), error: refused });
}

main().catch((err) => showProblem(`The page failed: ${err.message}`));
