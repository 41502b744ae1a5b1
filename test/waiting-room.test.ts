import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type App } from '../src/app.js';
import { createLogger } from '../src/logger.js';
import { AdmissionTokens } from '../src/services/waiting-room.js';
import { eventually, GqlClient, startTestServer, testConfig, type TestServer } from './support/harness.js';
import { createSale } from './support/fixtures.js';
import { PURCHASE, RESERVE } from './support/operations.js';
import { Recorder, wsClient } from './support/live.js';

const TICKET_FIELDS = /* GraphQL */ `fragment TicketFields on QueueTicket {
  saleId status position admissionToken admittedAt admissionExpiresAt estimatedWaitSeconds saleSoldOut holdsMayFree }`;
const JOIN_QUEUE = /* GraphQL */ `mutation JoinQueue($saleId: ID!) { joinQueue(saleId: $saleId) {
  __typename ...TicketFields ... on Rejected { code message field } } } ${TICKET_FIELDS}`;
const QUEUE_CHANGED = /* GraphQL */ `subscription QueueChanged($saleId: ID!) { queueChanged(saleId: $saleId) { ...TicketFields } } ${TICKET_FIELDS}`;
const MY_TICKET = /* GraphQL */ `query MyTicket($saleId: ID!) { me { queueTicket(saleId: $saleId) { ...TicketFields } } } ${TICKET_FIELDS}`;

interface Ticket {
  saleId: string;
  status: 'PENDING' | 'WAITING' | 'ADMITTED' | 'EXPIRED';
  position: number | null;
  admissionToken: string | null;
  admittedAt: string | null;
  admissionExpiresAt: string | null;
  estimatedWaitSeconds: number | null;
  saleSoldOut: boolean;
  holdsMayFree: boolean;
}

const TOKEN_SECONDS = 3;
let t: TestServer;
const bearer = new Map<string, string>();

beforeAll(async () => {
  // Rate limits are not under test here, and a thousand joins from one test IP would trip them.
  t = await startTestServer('waiting-room', { ADMISSION_TOKEN_SECONDS: String(TOKEN_SECONDS), RATE_LIMIT_ENABLED: 'false' });
});
afterAll(() => t?.close());

async function tokenOf(customer: string): Promise<string> {
  let token = bearer.get(customer);
  if (!token) bearer.set(customer, (token = await t.token(customer)));
  return token;
}

async function join(saleId: string, customer: string, client: GqlClient = t.client) {
  const r = await client.gql(JOIN_QUEUE, { saleId }, await tokenOf(customer));
  if (!r.data?.joinQueue) throw new Error(`joinQueue failed: ${r.body}`);
  return r.data.joinQueue as Ticket & { __typename: string; code?: string; field?: string };
}

async function ticketOf(saleId: string, customer: string, client: GqlClient = t.client): Promise<Ticket | null> {
  const r = await client.gql(MY_TICKET, { saleId }, await tokenOf(customer));
  if (!r.data?.me) throw new Error(`me.queueTicket failed: ${r.body}`);
  return r.data.me.queueTicket;
}

async function admittedTicket(saleId: string, customer: string): Promise<Ticket> {
  return eventually(async () => {
    const ticket = await ticketOf(saleId, customer);
    return ticket?.status === 'ADMITTED' ? ticket : null;
  }, 5000, 20);
}

/** Runs `fn` over `items` with at most `size` calls in flight, keeping results in item order. */
async function inPool<T, R>(items: readonly T[], size: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(size, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i], i);
      }
    }),
  );
  return out;
}

/** Spearman's rank correlation of two rankings of the same n things (both permutations of 1..n). */
function spearman(a: readonly number[], b: readonly number[]): number {
  const n = a.length;
  let d2 = 0;
  for (let i = 0; i < n; i++) d2 += (a[i] - b[i]) ** 2;
  return 1 - (6 * d2) / (n * (n * n - 1));
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const admin = (query: string, variables: Record<string, unknown>) => t.client.gql(query, variables, t.admin);
const PAUSE = `mutation($id: ID!) { pauseSale(id: $id) { status } }`;
const START_SOON = `mutation($id: ID!, $startsAt: DateTime!) { updateSale(id: $id, input: { startsAt: $startsAt }) { startsAt } }`;
/** Moves a SCHEDULED sale's start to `inMs` from now, so a test need not guess how long joining takes. */
async function startIn(saleId: string, inMs: number): Promise<number> {
  const startsAt = Date.now() + inMs;
  const r = await admin(START_SOON, { id: saleId, startsAt: new Date(startsAt).toISOString() });
  expect(r.errors).toBeUndefined();
  return startsAt;
}
const RESUME = `mutation($id: ID!) { resumeSale(id: $id) { status } }`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let keyN = 0;
const buy = async (itemId: string, customer: string, admissionToken?: string | null) =>
  (await t.client.gql(PURCHASE, { input: { saleItemId: itemId, idempotencyKey: `wr-${keyN++}`, admissionToken } }, await tokenOf(customer))).data.purchase;

describe('joinQueue and Customer.queueTicket', () => {
  it('answers NO_WAITING_ROOM, NOT_FOUND, INVALID_INPUT and UNAUTHENTICATED where they apply', async () => {
    const plain = await createSale(t);
    expect(await join(plain.saleId, 'edge-1')).toMatchObject({ __typename: 'Rejected', code: 'NO_WAITING_ROOM' });
    expect(await join('no-such-sale', 'edge-1')).toMatchObject({ __typename: 'Rejected', code: 'NOT_FOUND' });
    expect(await join('x'.repeat(65), 'edge-1')).toMatchObject({ __typename: 'Rejected', code: 'INVALID_INPUT', field: 'saleId' });
    const anonymous = await t.client.gql(JOIN_QUEUE, { saleId: plain.saleId });
    expect(anonymous.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    const tooLong = await t.client.gql(MY_TICKET, { saleId: 'x'.repeat(65) }, await tokenOf('edge-1'));
    expect(tooLong.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');

    const room = await createSale(t, { waitingRoom: true, admitPerSecond: 5, startsInMs: 60_000 });
    expect(await ticketOf(room.saleId, 'edge-1')).toBeNull();
    expect(await ticketOf(plain.saleId, 'edge-1')).toBeNull();
    const first = await join(room.saleId, 'edge-1');
    expect(first).toMatchObject({ __typename: 'QueueTicket', saleId: room.saleId, status: 'PENDING', position: null, admissionToken: null, saleSoldOut: false });
    // Idempotent: the same ticket again, and the same one through Customer.queueTicket.
    expect(await join(room.saleId, 'edge-1')).toEqual(first);
    expect({ __typename: 'QueueTicket', ...(await ticketOf(room.saleId, 'edge-1')) }).toEqual(first);
  });

  it('shuffles a 1,000-ticket pre-queue once at the start, differently per sale, with later tickets behind it', async () => {
    const N = 1000;
    const [a, b] = await Promise.all([1, 2].map(() => createSale(t, { waitingRoom: true, admitPerSecond: 1, startsInMs: 60_000 })));
    // Paused sales admit nobody, so every position stays exactly as the shuffle left it while we read.
    for (const s of [a, b]) expect((await admin(PAUSE, { id: s.saleId })).errors).toBeUndefined();
    const customers = range(0, N - 1).map((i) => `pre-${i}`);
    await inPool(customers, 50, tokenOf);

    // Join order: customer i joins both sales i-th (at most 25 joins in flight).
    const joined = await inPool(customers, 25, async (c) => [await join(a.saleId, c), await join(b.saleId, c)]);
    const startsAt = Math.max(await startIn(a.saleId, 500), await startIn(b.saleId, 500));
    for (const [ja, jb] of joined) {
      expect(ja).toMatchObject({ status: 'PENDING', position: null, estimatedWaitSeconds: null });
      expect(jb).toMatchObject({ status: 'PENDING', position: null });
    }
    await sleep(Math.max(0, startsAt + 500 - Date.now()));

    const read = async (saleId: string) => (await inPool(customers, 50, (c) => ticketOf(saleId, c)))!;
    const [ticketsA, ticketsB] = [await read(a.saleId), await read(b.saleId)];
    for (const tickets of [ticketsA, ticketsB]) {
      expect(tickets.every((x) => x?.status === 'WAITING')).toBe(true);
      expect(tickets.map((x) => x!.position!).sort((p, q) => p - q)).toEqual(range(1, N));
    }
    const posA = ticketsA.map((x) => x!.position!);
    const posB = ticketsB.map((x) => x!.position!);
    const joinRank = range(1, N);
    // FIFO would give rho = 1; a uniform shuffle gives rho ~ N(0, 1/sqrt(999)), so |rho| < 0.15 is ~4.7 sigma.
    expect(Math.abs(spearman(joinRank, posA))).toBeLessThan(0.15);
    expect(Math.abs(spearman(joinRank, posB))).toBeLessThan(0.15);
    // A fixed permutation (or one seeded by the join order) would repeat across sales.
    expect(posA).not.toEqual(posB);
    expect(Math.abs(spearman(posA, posB))).toBeLessThan(0.15);

    // After the start: arrival order, behind the whole pre-queue.
    for (let i = 0; i < 5; i++) {
      expect(await join(a.saleId, `late-${i}`)).toMatchObject({ status: 'WAITING', position: N + 1 + i, estimatedWaitSeconds: N + 1 + i });
    }
    // Idempotent after the shuffle too: joining again keeps the shuffled place.
    expect((await join(a.saleId, customers[0])).position).toBe(posA[0]);

    // Once resumed, admission starts at the front.
    expect((await admin(RESUME, { id: a.saleId })).data.resumeSale.status).toBe('ACTIVE');
    const front = customers[posA.indexOf(1)];
    const admitted = await admittedTicket(a.saleId, front);
    expect(admitted).toMatchObject({ position: 0, estimatedWaitSeconds: 0 });
    expect(admitted.admissionToken).toBeTruthy();
    expect((await ticketOf(a.saleId, customers[posA.indexOf(N)]))!.position).toBeGreaterThanOrEqual(N - 2);
  });

  it('admits at admitPerSecond (within 10 % over 5 s) and banks no capacity while nobody waits', async () => {
    const N = 2000;
    const rate = 100;
    const { saleId } = await createSale(t, { waitingRoom: true, admitPerSecond: rate, startsInMs: 60_000 });
    const customers = range(0, N - 1).map((i) => `rate-${i}`);
    await inPool(customers, 50, tokenOf);
    await inPool(customers, 50, (c) => join(saleId, c));
    const startsAt = await startIn(saleId, 200);
    await sleep(startsAt + 6000 - Date.now());

    const tickets = (await inPool(customers, 50, (c) => ticketOf(saleId, c))).map((x) => x!);
    const admittedAt = tickets.filter((x) => x.status === 'ADMITTED' || x.status === 'EXPIRED').map((x) => Date.parse(x.admittedAt!));
    expect(tickets.filter((x) => x.status === 'WAITING').length + admittedAt.length).toBe(N);
    const first = Math.min(...admittedAt);
    // Admissions after the first step and within 5 s of it: the rate times 5 s, one step short at most.
    const inWindow = admittedAt.filter((at) => at > first && at <= first + 5000).length;
    expect(inWindow).toBeGreaterThanOrEqual(rate * 5 * 0.9);
    expect(inWindow).toBeLessThanOrEqual(rate * 5 * 1.1);
    for (const x of tickets.filter((x) => x.status === 'EXPIRED')) expect(x.admissionToken).toBeNull();

    // A queue that ran dry does not let a crowd in at once later: capacity never piles up.
    const idle = await createSale(t, { waitingRoom: true, admitPerSecond: rate });
    await join(idle.saleId, 'idle-first');
    await admittedTicket(idle.saleId, 'idle-first');
    await sleep(1500);
    const crowd = range(0, 299).map((i) => `crowd-${i}`);
    await inPool(crowd, 50, tokenOf);
    const began = Date.now();
    await inPool(crowd, 50, (c) => join(idle.saleId, c));
    const last = await ticketOf(idle.saleId, crowd[crowd.length - 1]);
    const allowed = rate * ((Date.now() - began) / 1000 + 0.3);
    expect(last!.status).toBe('WAITING');
    expect(300 - last!.position!).toBeLessThanOrEqual(allowed);
  });
});

describe('admission tokens on purchase and reserve', () => {
  it('refuses missing, foreign, other-sale, bearer and expired tokens with NOT_ADMITTED, and accepts a valid one', async () => {
    const a = await createSale(t, { waitingRoom: true, admitPerSecond: 1000, stock: 10 });
    const b = await createSale(t, { waitingRoom: true, admitPerSecond: 1000, stock: 10 });
    const item = a.itemIds[0];
    await join(a.saleId, 'alice');
    await join(a.saleId, 'bob');
    await join(b.saleId, 'alice');
    const alice = (await admittedTicket(a.saleId, 'alice')).admissionToken!;
    const bob = (await admittedTicket(a.saleId, 'bob')).admissionToken!;
    const aliceOnB = (await admittedTicket(b.saleId, 'alice')).admissionToken!;
    expect(new Set([alice, bob, aliceOnB]).size).toBe(3);

    const notAdmitted = { __typename: 'Rejected', code: 'NOT_ADMITTED' };
    expect(await buy(item, 'alice')).toMatchObject(notAdmitted);
    expect(await buy(item, 'alice', bob)).toMatchObject(notAdmitted);
    expect(await buy(item, 'alice', aliceOnB)).toMatchObject(notAdmitted);
    expect(await buy(item, 'alice', await tokenOf('alice'))).toMatchObject(notAdmitted);
    expect(await buy(item, 'alice', 'not-a-token')).toMatchObject(notAdmitted);
    // Signed with the server's key and otherwise right, but past its expiry.
    const stale = await new AdmissionTokens(t.app.config.JWT_SECRET, TOKEN_SECONDS).sign('alice', a.saleId, Date.now() - 60_000);
    expect(await buy(item, 'alice', stale)).toMatchObject(notAdmitted);
    // Bob never joined sale b: alice's token for it does not help him there either.
    expect(await buy(b.itemIds[0], 'bob', aliceOnB)).toMatchObject(notAdmitted);

    expect(await buy(item, 'alice', alice)).toMatchObject({ __typename: 'PurchaseSuccess', order: { customerId: 'alice', quantity: 1 } });
    const reserved = await t.client.gql(RESERVE, { input: { saleItemId: item, idempotencyKey: 'wr-reserve', admissionToken: bob } }, await tokenOf('bob'));
    expect(reserved.data.reserve.__typename).toBe('ReserveSuccess');
    const refused = await t.client.gql(RESERVE, { input: { saleItemId: item, idempotencyKey: 'wr-reserve-2', admissionToken: alice } }, await tokenOf('bob'));
    expect(refused.data.reserve).toMatchObject(notAdmitted);

    // An admission token is never a bearer token.
    const asBearer = await t.client.gql(`{ me { id } }`, {}, alice);
    expect(asBearer.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');

    // A sale without a waiting room needs no token.
    const plain = await createSale(t);
    expect((await buy(plain.itemIds[0], 'carol')).__typename).toBe('PurchaseSuccess');

    // Unused past its validity, the ticket turns EXPIRED and its token stops working.
    const dave = await (async () => {
      await join(a.saleId, 'dave');
      return admittedTicket(a.saleId, 'dave');
    })();
    expect(Date.parse(dave.admissionExpiresAt!) - Date.parse(dave.admittedAt!)).toBeLessThanOrEqual(TOKEN_SECONDS * 1000);
    await sleep(Date.parse(dave.admissionExpiresAt!) - Date.now() + 100);
    expect(await ticketOf(a.saleId, 'dave')).toMatchObject({ status: 'EXPIRED', position: 0, admissionToken: null });
    expect(await buy(item, 'dave', dave.admissionToken)).toMatchObject(notAdmitted);
  });

  it('tells a waiting ticket when the sale can no longer be bought, and when held units may come back', async () => {
    const { saleId, itemIds } = await createSale(t, { waitingRoom: true, admitPerSecond: 1000, stock: 1 });
    await join(saleId, 'stock-1');
    const token = (await admittedTicket(saleId, 'stock-1')).admissionToken!;
    expect(await ticketOf(saleId, 'stock-1')).toMatchObject({ saleSoldOut: false, holdsMayFree: false });
    const hold = await t.client.gql(RESERVE, { input: { saleItemId: itemIds[0], idempotencyKey: 'hold', admissionToken: token } }, await tokenOf('stock-1'));
    expect(hold.data.reserve.__typename).toBe('ReserveSuccess');
    expect(await join(saleId, 'stock-2')).toMatchObject({ saleSoldOut: false, holdsMayFree: true });
    const confirmed = await t.client.gql(`mutation($id: ID!) { confirmReservation(reservationId: $id) { __typename } }`, { id: hold.data.reserve.reservation.id }, await tokenOf('stock-1'));
    expect(confirmed.data.confirmReservation.__typename).toBe('PurchaseSuccess');
    expect(await ticketOf(saleId, 'stock-2')).toMatchObject({ saleSoldOut: true, holdsMayFree: false });
  });
});

describe('Subscription.queueChanged', () => {
  const clients: ReturnType<typeof wsClient>[] = [];
  const subscribe = async (saleId: string, customer: string) => {
    const client = wsClient(t.app.url, await tokenOf(customer));
    clients.push(client);
    return new Recorder<{ queueChanged: Ticket }>(client, QUEUE_CHANGED, { saleId });
  };
  afterAll(() => Promise.all(clients.map((c) => c.dispose())));

  it('sends the ticket first, then the shuffle and admission at once, positions at most every ~2 s, and expiry', async () => {
    const rate = 3;
    const { saleId } = await createSale(t, { waitingRoom: true, admitPerSecond: rate, startsInMs: 60_000 });
    const customers = range(0, 9).map((i) => `sub-${i}`);
    for (const c of customers) await join(saleId, c);
    const recorders = await Promise.all(customers.map((c) => subscribe(saleId, c)));
    for (const r of recorders) expect((await r.waitFor(() => true)).data!.queueChanged).toMatchObject({ status: 'PENDING', position: null });
    // Without a ticket there is no current state yet: the first event is the ticket once taken.
    const late = await subscribe(saleId, 'sub-late');

    const startsAt = await startIn(saleId, 300);
    const shuffled = await Promise.all(recorders.map((r) => r.waitFor((d) => d.queueChanged.status === 'WAITING', 3000)));
    for (const e of shuffled) expect(e.at - startsAt).toBeLessThan(1000);
    expect(shuffled.map((e) => e.data!.queueChanged.position).sort((p, q) => p! - q!)).toEqual(range(1, 10));

    expect(late.events).toEqual([]);
    const joinedAt = Date.now();
    await join(saleId, 'sub-late');
    const lateFirst = await late.waitFor(() => true, 3000);
    expect(lateFirst.data!.queueChanged).toMatchObject({ status: 'WAITING' });
    expect(lateFirst.at - joinedAt).toBeLessThan(2600);

    const back = recorders[shuffled.findIndex((e) => e.data!.queueChanged.position === 10)];
    const admitted = await back.waitFor((d) => d.queueChanged.status === 'ADMITTED', 6000);
    expect(admitted.data!.queueChanged.admissionToken).toBeTruthy();
    // Admission at once: pushed as soon as this instance's scheduler saw it.
    expect(admitted.at - Date.parse(admitted.data!.queueChanged.admittedAt!)).toBeLessThan(600);
    const waiting = back.events.filter((e) => e.data?.queueChanged.status === 'WAITING');
    expect(waiting.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < waiting.length; i++) {
      expect(waiting[i].at - waiting[i - 1].at).toBeGreaterThanOrEqual(1800);
      expect(waiting[i].data!.queueChanged.position!).toBeLessThan(waiting[i - 1].data!.queueChanged.position!);
    }

    const expired = await back.waitFor((d) => d.queueChanged.status === 'EXPIRED', (TOKEN_SECONDS + 2) * 1000);
    expect(expired.at - Date.parse(admitted.data!.queueChanged.admissionExpiresAt!)).toBeLessThan(1000);
    expect(expired.data!.queueChanged).toMatchObject({ position: 0, admissionToken: null });
  });

  it('refuses strangers, unknown sales and sales without a waiting room', async () => {
    const plain = await createSale(t);
    const anonymous = wsClient(t.app.url);
    clients.push(anonymous);
    expect((await new Recorder(anonymous, QUEUE_CHANGED, { saleId: plain.saleId }).refusal())[0].extensions?.code).toBe('UNAUTHENTICATED');
    expect((await (await subscribe('no-such-sale', 'sub-x')).refusal())[0].extensions?.code).toBe('NOT_FOUND');
    expect((await (await subscribe(plain.saleId, 'sub-x')).refusal())[0].extensions?.code).toBe('BAD_USER_INPUT');
  });
});

describe('several instances', () => {
  let second: App;
  let client2: GqlClient;
  beforeAll(async () => {
    const iso = { databaseUrl: t.app.config.DATABASE_URL, redisPrefix: t.app.config.REDIS_PREFIX };
    const config = testConfig(iso, { ADMISSION_TOKEN_SECONDS: String(TOKEN_SECONDS), RATE_LIMIT_ENABLED: 'false' });
    second = await startApp(config, { log: createLogger(config.LOG_LEVEL) });
    client2 = new GqlClient(second.url);
  });
  afterAll(async () => {
    await client2?.close();
    await second?.stop();
  });

  it('advancing from two instances at once admits nobody twice and skips no position', async () => {
    const N = 1000;
    const rate = 200;
    const { saleId } = await createSale(t, { waitingRoom: true, admitPerSecond: rate, startsInMs: 60_000 });
    const customers = range(0, N - 1).map((i) => `multi-${i}`);
    const clients = [t.client, client2];
    await inPool(customers, 50, tokenOf);
    await inPool(customers, 50, (c, i) => join(saleId, c, clients[i % 2]));
    const startsAt = await startIn(saleId, 200);
    await sleep(startsAt - Date.now());

    // Both schedulers run; on top, reads on both instances advance admission lazily, concurrently.
    const until = Date.now() + 2500;
    await inPool(range(0, 39), 40, async (w) => {
      while (Date.now() < until) await ticketOf(saleId, customers[(w * 97 + Date.now()) % N], clients[w % 2]);
    });
    expect((await admin(PAUSE, { id: saleId })).data.pauseSale.status).toBe('PAUSED');
    await sleep(300);

    const tickets = (await inPool(customers, 50, (c, i) => ticketOf(saleId, c, clients[i % 2]))).map((x) => x!);
    const admitted = tickets.filter((x) => x.status === 'ADMITTED' || x.status === 'EXPIRED');
    const waiting = tickets.filter((x) => x.status === 'WAITING');
    expect(admitted.length + waiting.length).toBe(N);
    expect(admitted.length).toBeGreaterThan(0);
    // No skipped or doubled place: the waiting tickets are exactly 1..(N - admitted).
    expect(waiting.map((x) => x.position!).sort((p, q) => p - q)).toEqual(range(1, N - admitted.length));
    // No double admission: two instances together still admit at the rate (one step of slack).
    const at = admitted.map((x) => Date.parse(x.admittedAt!));
    const first = Math.min(...at);
    const span = (Math.max(...at) - first) / 1000;
    const afterFirst = at.filter((x) => x > first).length;
    expect(afterFirst).toBeLessThanOrEqual(rate * span * 1.1 + 5);
    expect(afterFirst).toBeGreaterThanOrEqual(rate * span * 0.9 - 5);
    const tokens = admitted.filter((x) => x.status === 'ADMITTED').map((x) => x.admissionToken);
    expect(new Set(tokens).size).toBe(tokens.length);
  });
});
