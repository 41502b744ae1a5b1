import { randomBytes } from 'node:crypto';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/harness.js';

// Issue 17 d, 7: 11 wrong passwords for someone else's email got the owner's correct login
// RATE_LIMITED for 59 s, renewable forever. Failed logins now count per (email, client address),
// under a generous per-email ceiling that slows guessing from many addresses with a backoff.
//
// The server knows a caller by its socket address (TRUST_PROXY_HOPS=0, the default), so each
// "machine" here is a client bound to its own loopback address (127.0.0.2, 127.0.0.3, ...).

const LOGIN = `mutation($email: String!, $password: String!) { login(email: $email, password: $password) { token customerId } }`;
const PASSWORD = 'correct horse battery staple';

interface Answer {
  code: string;
  retryAfterSeconds?: number;
  customerId?: string;
}

/** A client whose connections leave from `address`. */
function machine(t: TestServer, address: string) {
  const agent = new Agent({ localAddress: address, connections: 4 });
  const login = async (email: string, password: string, headers: Record<string, string> = {}): Promise<Answer> => {
    const res = await request(`${t.app.url}/graphql`, {
      method: 'POST', dispatcher: agent, body: JSON.stringify({ query: LOGIN, variables: { email, password } }),
      headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
    });
    expect(res.statusCode).toBe(200);
    const body = JSON.parse(await res.body.text());
    const error = body.errors?.[0];
    if (error) return { code: error.extensions?.code, retryAfterSeconds: error.extensions?.retryAfterSeconds };
    return { code: 'OK', customerId: body.data.login.customerId };
  };
  return { address, login, close: () => agent.close() };
}
type Machine = ReturnType<typeof machine>;

const email = (label: string) => `${label}-${randomBytes(4).toString('hex')}@example.com`;
const wrong = (i: number) => `wrong-password-${i}`;

async function guesses(from: Machine, victim: string, count: number): Promise<Answer[]> {
  const answers: Answer[] = [];
  for (let i = 0; i < count; i++) answers.push(await from.login(victim, wrong(i)));
  return answers;
}
const codes = (answers: Answer[]) => answers.map((a) => a.code);

describe('failed logins are limited per (email, client address)', () => {
  let t: TestServer;
  let a: Machine;
  let b: Machine;
  let c: Machine;
  beforeAll(async () => {
    // The defaults: 10 attempts per email and address a minute, a ceiling of 100 per email per 15 min.
    t = await startTestServer('abuseauth', { RATE_LIMIT_AUTH_PER_IP: '10000/60s' });
    [a, b, c] = ['127.0.0.2', '127.0.0.3', '127.0.0.4'].map((ip) => machine(t, ip));
  });
  afterAll(async () => {
    await Promise.all([a, b, c].map((m) => m?.close()));
    await t?.close();
  });

  it('11 wrong passwords from A: A is RATE_LIMITED, the owner logs in from B', async () => {
    const victim = email('owner');
    const registered = await t.app.services.accounts.register(victim, PASSWORD);
    expect(registered.ok).toBe(true);
    const ownerId = registered.ok ? registered.session.customerId : '';

    const answers = await guesses(a, victim, 11);
    expect(codes(answers)).toEqual([...Array(10).fill('UNAUTHENTICATED'), 'RATE_LIMITED']);
    const limited = answers[10];
    expect(Number.isInteger(limited.retryAfterSeconds)).toBe(true);
    expect(limited.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(limited.retryAfterSeconds).toBeLessThanOrEqual(60);
    // A is limited for this email even with the right password, and rotating X-Forwarded-For
    // does not help: the server trusts no proxy header unless TRUST_PROXY_HOPS says so.
    expect((await a.login(victim, PASSWORD)).code).toBe('RATE_LIMITED');
    expect((await a.login(victim, wrong(99), { 'x-forwarded-for': '203.0.113.7' })).code).toBe('RATE_LIMITED');

    // The owner, elsewhere, is not locked out.
    expect(await b.login(victim, PASSWORD)).toEqual({ code: 'OK', customerId: ownerId });
    // The owner's success does not unlock A, and A's other emails are unaffected.
    expect((await a.login(victim, PASSWORD)).code).toBe('RATE_LIMITED');
    expect((await a.login(email('someone-else'), wrong(0))).code).toBe('UNAUTHENTICATED');

    // A keeps hammering: refused attempts count nowhere else, the owner still gets in.
    const hammering = await Promise.all(Array.from({ length: 40 }, (_, i) => a.login(victim, wrong(i))));
    expect(new Set(codes(hammering))).toEqual(new Set(['RATE_LIMITED']));
    expect(await b.login(victim, PASSWORD)).toEqual({ code: 'OK', customerId: ownerId });
  });

  it('20 simultaneous guesses from one address: exactly 10 are checked', async () => {
    const victim = email('burst');
    await t.app.services.accounts.register(victim, PASSWORD);
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => c.login(victim, wrong(i))));
    expect(codes(answers).filter((x) => x === 'UNAUTHENTICATED')).toHaveLength(10);
    expect(codes(answers).filter((x) => x === 'RATE_LIMITED')).toHaveLength(10);
  });

  it('a success clears the counter of its address', async () => {
    const victim = email('forgetful');
    await t.app.services.accounts.register(victim, PASSWORD);
    expect(new Set(codes(await guesses(c, victim, 9)))).toEqual(new Set(['UNAUTHENTICATED']));
    expect((await c.login(victim, PASSWORD)).code).toBe('OK');
    // A whole budget again: 10 checked, the 11th limited.
    expect(codes(await guesses(c, victim, 11))).toEqual([...Array(10).fill('UNAUTHENTICATED'), 'RATE_LIMITED']);
  });
});

describe('the per-email ceiling', () => {
  let t: TestServer;
  let machines: Machine[];
  const CAP_SECONDS = 2;
  beforeAll(async () => {
    t = await startTestServer('abuseceil', {
      RATE_LIMIT_AUTH_PER_IP: '10000/60s',
      RATE_LIMIT_AUTH_PER_EMAIL: '3/60s',
      RATE_LIMIT_AUTH_EMAIL_CEILING: '6/60s',
      RATE_LIMIT_AUTH_BACKOFF_MAX_SECONDS: String(CAP_SECONDS),
    });
    machines = Array.from({ length: 6 }, (_, i) => machine(t, `127.0.1.${i + 2}`));
  });
  afterAll(async () => {
    await Promise.all((machines ?? []).map((m) => m.close()));
    await t?.close();
  });

  it('one address alone never pushes the email past it', async () => {
    const victim = email('single');
    await t.app.services.accounts.register(victim, PASSWORD);
    const answers = await guesses(machines[0], victim, 30);
    expect(codes(answers).filter((x) => x === 'UNAUTHENTICATED')).toHaveLength(3);
    expect((await machines[5].login(victim, PASSWORD)).code).toBe('OK');
  });

  it('guesses from many addresses are slowed by a backoff of at most its cap, never a lockout', async () => {
    const [a1, a2, a3, a4, a5, owner] = machines;
    const victim = email('distributed');
    await t.app.services.accounts.register(victim, PASSWORD);

    // Six guesses from two addresses fill the ceiling; the next one passes and starts the backoff.
    expect(new Set(codes([...(await guesses(a1, victim, 3)), ...(await guesses(a2, victim, 3))]))).toEqual(new Set(['UNAUTHENTICATED']));
    expect((await a3.login(victim, wrong(7))).code).toBe('UNAUTHENTICATED');
    const slowed = await a4.login(victim, wrong(8));
    expect(slowed.code).toBe('RATE_LIMITED');
    expect(slowed.retryAfterSeconds).toBe(1);

    // The owner may have to wait, but never longer than the cap.
    let answer = await owner.login(victim, PASSWORD);
    const deadline = Date.now() + 10_000;
    while (answer.code === 'RATE_LIMITED' && Date.now() < deadline) {
      expect(answer.retryAfterSeconds).toBeLessThanOrEqual(CAP_SECONDS);
      await new Promise((r) => setTimeout(r, answer.retryAfterSeconds! * 1000));
      answer = await owner.login(victim, PASSWORD);
    }
    expect(answer.code).toBe('OK');

    // The next guess from anywhere passes and backs off again, at the cap: the owner's success
    // lifted the wait but the ceiling still remembers the guesses.
    expect((await a5.login(victim, wrong(9))).code).toBe('UNAUTHENTICATED');
    const again = await a5.login(victim, wrong(10));
    expect(again).toMatchObject({ code: 'RATE_LIMITED', retryAfterSeconds: CAP_SECONDS });
  });
});
