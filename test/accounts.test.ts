import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_COMMAND } from '../load/harness/server-process.js';
import { createSale } from './support/fixtures.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { PURCHASE, RESERVE } from './support/operations.js';

const REGISTER = `mutation($email: String!, $password: String!) { register(email: $email, password: $password) { token customerId expiresAt } }`;
const LOGIN = `mutation($email: String!, $password: String!) { login(email: $email, password: $password) { token customerId expiresAt } }`;
const ME = `{ me { id } }`;
const DELIVERY_FIELDS = `delivery { name phone addressLine1 addressLine2 city postalCode country }`;
const ORDER = `query($id: ID!) { order(id: $id) { id customerId ${DELIVERY_FIELDS} } }`;
const MY_ORDERS = `{ me { id orders(first: 10) { edges { node { id ${DELIVERY_FIELDS} } } } } }`;
const CONFIRM_WITH_DELIVERY = `mutation($id: ID!, $delivery: DeliveryInput) { confirmReservation(reservationId: $id, delivery: $delivery) {
  __typename ... on PurchaseSuccess { order { id ${DELIVERY_FIELDS} } } ... on Rejected { code field message } } }`;

let t: TestServer;
const passwords: string[] = [];
let n = 0;
const uniqueEmail = (tag: string) => `${tag}-${process.pid}-${n++}@example.com`;
const password = () => {
  const p = `pw-${Math.random().toString(36).slice(2)}-secret`;
  passwords.push(p);
  return p;
};

async function register(email: string, pw: string) {
  const r = await t.client.gql(REGISTER, { email, password: pw });
  if (!r.data?.register) throw new Error(`register failed: ${r.body}`);
  return r.data.register as { token: string; customerId: string; expiresAt: string };
}

beforeAll(async () => {
  t = await startTestServer('accounts', { LOG_LEVEL: 'trace' }, { captureLogs: 'trace' });
});
afterAll(() => t?.close());

describe('register and login (built-in identity)', () => {
  it('register answers a working HS256 customer token whose subject is a new user id', async () => {
    const before = Date.now();
    const auth = await register(uniqueEmail('new'), password());
    const header = decodeProtectedHeader(auth.token);
    const claims = decodeJwt(auth.token);
    expect(header.alg).toBe('HS256');
    expect(claims.sub).toBe(auth.customerId);
    expect(claims.role).toBe('customer');
    expect(new Date(auth.expiresAt).getTime()).toBeGreaterThan(before);
    expect(claims.exp! * 1000).toBe(new Date(auth.expiresAt).getTime());
    const me = await t.client.gql(ME, {}, auth.token);
    expect(me.data.me.id).toBe(auth.customerId);

    const again = await register(uniqueEmail('new'), password());
    expect(again.customerId).not.toBe(auth.customerId);
  });

  it('normalises emails (trim, lower case) and refuses a taken one with BAD_USER_INPUT', async () => {
    const local = `Mixed.Case-${process.pid}-${n++}`;
    const pw = password();
    const first = await register(`  ${local}@Example.COM `, pw);
    const row = await t.app.db.selectFrom('users').select('email').where('id', '=', first.customerId).executeTakeFirstOrThrow();
    expect(row.email).toBe(`${local.toLowerCase()}@example.com`);

    const taken = await t.client.gql(REGISTER, { email: `${local.toUpperCase()}@example.com`, password: password() });
    expect(taken.status).toBe(200);
    expect(taken.data).toBeNull();
    expect(taken.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');

    const login = await t.client.gql(LOGIN, { email: ` ${local.toUpperCase()}@EXAMPLE.com`, password: pw });
    expect(login.data?.login?.customerId).toBe(first.customerId);
  });

  it('refuses a password under 10 characters and a malformed email with BAD_USER_INPUT', async () => {
    const short = await t.client.gql(REGISTER, { email: uniqueEmail('short'), password: '123456789' });
    expect(short.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    expect(short.errors?.[0].message).toMatch(/10 characters/);
    const bad = await t.client.gql(REGISTER, { email: 'not-an-email', password: password() });
    expect(bad.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    const exactlyTen = await t.client.gql(REGISTER, { email: uniqueEmail('ten'), password: '1234567890' });
    expect(exactlyTen.errors).toBeUndefined();
    expect(exactlyTen.data.register.customerId).toBeTruthy();
  });

  it('stores scrypt hashes with their parameters and a per-user salt, never the password', async () => {
    const pw = password();
    const a = await register(uniqueEmail('hash'), pw);
    const b = await register(uniqueEmail('hash'), pw);
    const rows = await t.app.db.selectFrom('users').select(['id', 'password_hash']).where('id', 'in', [a.customerId, b.customerId]).execute();
    expect(rows).toHaveLength(2);
    for (const r of rows) {
      expect(r.password_hash).toMatch(/^\$scrypt\$ln=(1[5-9]|2\d),r=8,p=\d+\$[A-Za-z0-9+/=]{20,}\$[A-Za-z0-9+/=]{40,}$/);
      expect(r.password_hash).not.toContain(pw);
    }
    expect(rows[0].password_hash).not.toBe(rows[1].password_hash);
  });

  it('answers the same UNAUTHENTICATED error for an unknown email and a wrong password, in comparable time', async () => {
    const email = uniqueEmail('login');
    const pw = password();
    const auth = await register(email, pw);

    const ok = await t.client.gql(LOGIN, { email, password: pw });
    expect(ok.data.login.customerId).toBe(auth.customerId);
    expect((await t.client.gql(ME, {}, ok.data.login.token)).data.me.id).toBe(auth.customerId);

    const timed = async (vars: { email: string; password: string }) => {
      const started = performance.now();
      const r = await t.client.gql(LOGIN, vars);
      return { r, ms: performance.now() - started };
    };
    const wrong: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 5; i++) {
      const w = await timed({ email, password: `${pw}-wrong` });
      const u = await timed({ email: uniqueEmail('nobody'), password: pw });
      for (const { r } of [w, u]) {
        expect(r.status).toBe(200);
        expect(r.data).toBeNull();
        expect(r.errors).toHaveLength(1);
        expect(r.errors![0].extensions?.code).toBe('UNAUTHENTICATED');
      }
      expect(u.r.errors![0].message).toBe(w.r.errors![0].message);
      wrong.push(w.ms);
      unknown.push(u.ms);
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[2];
    // Without the dummy scrypt an unknown email answers in a few ms against ~100 ms for a real check.
    expect(median(unknown)).toBeGreaterThan(median(wrong) * 0.5);
  });

  it('never writes a password to the log, even at trace level', async () => {
    expect(t.logs.length).toBeGreaterThan(0);
    const all = JSON.stringify(t.logs);
    expect(passwords.length).toBeGreaterThan(5);
    for (const p of passwords) expect(all).not.toContain(p);
  });
});

describe('delivery details (sealed with DATA_KEY)', () => {
  const delivery = {
    name: 'Asha Verma-Privacy', phone: '+919812345678', addressLine1: '12 Secret Lane Flat 4B', addressLine2: 'Near Hidden Park',
    city: 'Bengaluru Private', postalCode: '560001', country: 'IN',
  };

  it('shows them to their customer (order and me.orders) and admins, to nobody else, and stores no plaintext', async () => {
    const alice = await register(uniqueEmail('alice'), password());
    const bob = await register(uniqueEmail('bob'), password());
    const { itemIds } = await createSale(t, { stock: 10 });
    const bought = await t.client.gql(PURCHASE, { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: 'with-delivery', delivery } }, alice.token);
    expect(bought.data.purchase.__typename).toBe('PurchaseSuccess');
    const orderId = bought.data.purchase.order.id as string;

    const mine = await t.client.gql(ORDER, { id: orderId }, alice.token);
    expect(mine.data.order.customerId).toBe(alice.customerId);
    expect(mine.data.order.delivery).toEqual(delivery);
    const list = await t.client.gql(MY_ORDERS, {}, alice.token);
    expect(list.data.me.orders.edges.map((e: any) => e.node)).toEqual([{ id: orderId, delivery }]);

    const theirs = await t.client.gql(ORDER, { id: orderId }, bob.token);
    expect(theirs.errors).toBeUndefined();
    expect(theirs.data.order).toBeNull();
    expect((await t.client.gql(MY_ORDERS, {}, bob.token)).data.me.orders.edges).toEqual([]);
    expect((await t.client.gql(ORDER, { id: orderId })).data?.order ?? null).toBeNull();
    expect((await t.client.gql(ORDER, { id: orderId }, t.admin)).data.order.delivery).toEqual(delivery);

    const client = new pg.Client({ connectionString: t.app.config.DATABASE_URL });
    await client.connect();
    try {
      const { rows } = await client.query('select delivery_enc, row_to_json(o)::text as whole from orders o where id = $1', [orderId]);
      expect(rows).toHaveLength(1);
      expect(rows[0].delivery_enc).toMatch(/^v1\./);
      for (const secret of ['Asha', 'Verma', '9812345678', 'Secret Lane', 'Hidden Park', 'Bengaluru', '560001']) {
        expect(rows[0].whole).not.toContain(secret);
      }
    } finally {
      await client.end();
    }
  });

  it('seals delivery given at confirmReservation too', async () => {
    const carol = await register(uniqueEmail('carol'), password());
    const { itemIds } = await createSale(t, { stock: 5 });
    const held = await t.client.gql(RESERVE, { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: 'hold-1' } }, carol.token);
    expect(held.data.reserve.__typename).toBe('ReserveSuccess');
    const confirmed = await t.client.gql(CONFIRM_WITH_DELIVERY, { id: held.data.reserve.reservation.id, delivery }, carol.token);
    expect(confirmed.data.confirmReservation.__typename).toBe('PurchaseSuccess');
    expect(confirmed.data.confirmReservation.order.delivery).toEqual(delivery);
    const row = await t.app.db.selectFrom('orders').select('delivery_enc').where('id', '=', confirmed.data.confirmReservation.order.id).executeTakeFirstOrThrow();
    expect(row.delivery_enc).not.toContain('Asha');
    expect(t.app.services.delivery.open(row.delivery_enc!)).toEqual(delivery);
  });

  it('rejects a bad phone or country as INVALID_INPUT naming the field, without selling', async () => {
    const dave = await register(uniqueEmail('dave'), password());
    const { itemIds } = await createSale(t, { stock: 5 });
    const cases = [
      { delivery: { ...delivery, phone: '98123 45678' }, field: 'input.delivery.phone' },
      { delivery: { ...delivery, country: 'India' }, field: 'input.delivery.country' },
      { delivery: { ...delivery, name: '   ' }, field: 'input.delivery.name' },
    ];
    for (const [i, c] of cases.entries()) {
      const r = await t.client.gql(PURCHASE, { input: { saleItemId: itemIds[0], quantity: 1, idempotencyKey: `bad-${i}`, delivery: c.delivery } }, dave.token);
      expect(r.data.purchase).toMatchObject({ __typename: 'Rejected', code: 'INVALID_INPUT', field: c.field });
    }
    const orders = await t.app.db.selectFrom('orders').select('id').where('customer_id', '=', dave.customerId).execute();
    expect(orders).toHaveLength(0);
  });
});

describe('tokens from an external identity provider (JWT_JWKS_URL)', () => {
  let jwksServer: Server;
  let jwksFetches = 0;
  let idp: TestServer;
  let rsa: { privateKey: CryptoKey; publicKey: CryptoKey };
  let ec: { privateKey: CryptoKey; publicKey: CryptoKey };
  const ISSUER = 'https://idp.test.example';
  const AUDIENCE = 'flash-sale-api';

  beforeAll(async () => {
    rsa = await generateKeyPair('RS256');
    ec = await generateKeyPair('ES256');
    const keys: JWK[] = [
      { ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' },
      { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' },
    ];
    jwksServer = createServer((_req, res) => {
      jwksFetches++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    const { port } = jwksServer.address() as AddressInfo;
    idp = await startTestServer('jwks', { JWT_JWKS_URL: `http://127.0.0.1:${port}/.well-known/jwks.json`, JWT_JWKS_ISSUER: ISSUER, JWT_JWKS_AUDIENCE: AUDIENCE });
  });
  afterAll(async () => {
    await idp?.close();
    await new Promise((resolve) => jwksServer?.close(resolve));
  });

  const idpToken = (key: CryptoKey, alg: 'RS256' | 'ES256', kid: string, sub: string, opts: { exp?: number; aud?: string; iss?: string; role?: string } = {}) =>
    new SignJWT({ role: opts.role ?? 'customer' })
      .setProtectedHeader({ alg, kid, typ: 'JWT' })
      .setSubject(sub)
      .setIssuer(opts.iss ?? ISSUER)
      .setAudience(opts.aud ?? AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(opts.exp ?? Math.floor(Date.now() / 1000) + 600)
      .sign(key);

  it('accepts RS256 and ES256 tokens signed by the provider keys, fetching the JWKS once', async () => {
    const r = await idp.client.gql(ME, {}, await idpToken(rsa.privateKey, 'RS256', 'rsa-1', 'idp-user-rsa'));
    expect(r.errors).toBeUndefined();
    expect(r.data.me.id).toBe('idp-user-rsa');
    const e = await idp.client.gql(ME, {}, await idpToken(ec.privateKey, 'ES256', 'ec-1', 'idp-user-ec'));
    expect(e.data.me.id).toBe('idp-user-ec');
    for (let i = 0; i < 3; i++) {
      expect((await idp.client.gql(ME, {}, await idpToken(rsa.privateKey, 'RS256', 'rsa-1', `u${i}`))).data.me.id).toBe(`u${i}`);
    }
    // HS256 tokens of our own keep working beside the provider's.
    expect((await idp.client.gql(ME, {}, await idp.token('local-user'))).data.me.id).toBe('local-user');
    expect(jwksFetches).toBe(1);
  });

  it('refuses a token signed by another key, an expired one, and one for another audience or issuer', async () => {
    const other = await generateKeyPair('RS256');
    const otherEc = await generateKeyPair('ES256');
    const bad = {
      otherKeySameKid: await idpToken(other.privateKey, 'RS256', 'rsa-1', 'mallory'),
      otherEcKey: await idpToken(otherEc.privateKey, 'ES256', 'ec-1', 'mallory'),
      unknownKid: await idpToken(other.privateKey, 'RS256', 'rsa-9', 'mallory'),
      expired: await idpToken(rsa.privateKey, 'RS256', 'rsa-1', 'late', { exp: Math.floor(Date.now() / 1000) - 120 }),
      otherAudience: await idpToken(rsa.privateKey, 'RS256', 'rsa-1', 'elsewhere', { aud: 'some-other-app' }),
      otherIssuer: await idpToken(rsa.privateKey, 'RS256', 'rsa-1', 'elsewhere', { iss: 'https://evil.example' }),
    };
    for (const [what, token] of Object.entries(bad)) {
      const r = await idp.client.gql(ME, {}, token);
      expect({ what, code: r.errors?.[0].extensions?.code, me: r.data?.me ?? null }).toEqual({ what, code: 'UNAUTHENTICATED', me: null });
    }
    const control = await idp.client.gql(ME, {}, await idpToken(rsa.privateKey, 'RS256', 'rsa-1', 'fine'));
    expect(control.data.me.id).toBe('fine');
  });

  it('treats a provider token claiming admin as a customer unless JWT_JWKS_ALLOW_ADMIN is set', async () => {
    const claimsAdmin = await idpToken(rsa.privateKey, 'RS256', 'rsa-1', 'would-be-admin', { role: 'admin' });
    const r = await idp.client.gql(`{ saleSummary(saleId: "none") { unitsSold } }`, {}, claimsAdmin);
    expect(r.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    expect((await idp.client.gql(ME, {}, claimsAdmin)).data.me.id).toBe('would-be-admin');
    const { port } = jwksServer.address() as AddressInfo;
    const trusting = await startTestServer('jwksadmin', { JWT_JWKS_URL: `http://127.0.0.1:${port}/.well-known/jwks.json`, JWT_JWKS_ISSUER: ISSUER, JWT_JWKS_AUDIENCE: AUDIENCE, JWT_JWKS_ALLOW_ADMIN: 'true' });
    try {
      const ok = await trusting.client.gql(`{ saleSummary(saleId: "none") { unitsSold } }`, {}, claimsAdmin);
      expect(ok.errors).toBeUndefined();
      expect(ok.data.saleSummary).toBeNull();
    } finally {
      await trusting.close();
    }
  });

  it('refuses provider tokens on a server without JWT_JWKS_URL', async () => {
    const r = await t.client.gql(ME, {}, await idpToken(rsa.privateKey, 'RS256', 'rsa-1', 'idp-user'));
    expect(r.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
  });
});

describe('production refuses the development secrets', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const run = (env: Record<string, string>) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !['JWT_SECRET', 'DATA_KEY', 'NODE_ENV', 'PORT'].includes(k))) as Record<string, string>;
      const child = spawn(process.execPath, [...API_COMMAND.nodeArgs, API_COMMAND.entry], { cwd: root, env: { ...base, PORT: '0', LOG_LEVEL: 'silent', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += String(d)));
      const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.on('exit', (code) => {
        clearTimeout(killer);
        resolve({ code, stderr });
      });
    });

  it('exits 1 naming JWT_SECRET and DATA_KEY when both are the defaults', async () => {
    const r = await run({ NODE_ENV: 'production' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('JWT_SECRET');
    expect(r.stderr).toContain('DATA_KEY');
    expect(r.stderr).toMatch(/refused when NODE_ENV=production/);
  });

  it('names only the default that is left', async () => {
    const r = await run({ NODE_ENV: 'production', JWT_SECRET: 'a-real-secret-of-at-least-32-bytes' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('DATA_KEY');
    expect(r.stderr).not.toContain('JWT_SECRET');
  });
});
