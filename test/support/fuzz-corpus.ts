import {
  getNamedType,
  isEnumType,
  isInputObjectType,
  isInterfaceType,
  isLeafType,
  isListType,
  isNonNullType,
  isObjectType,
  isUnionType,
  type GraphQLArgument,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLOutputType,
  type GraphQLSchema,
} from 'graphql';

/** A small, fast, seedable PRNG (mulberry32): the same seed gives the same corpus. */
export type Rng = () => number;
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Each case has a generator of its own, so one case is reproducible from (seed, index) alone. */
export function caseRng(seed: number, index: number): Rng {
  return mulberry32(Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35));
}

const int = (rng: Rng, n: number) => Math.floor(rng() * n);
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[int(rng, xs.length)];
const chance = (rng: Rng, p: number) => rng() < p;

export interface FuzzWorld {
  /** The contract's schema: documents are built from what clients are promised. */
  schema: GraphQLSchema;
  /** Real ids (sales, items, products) the fuzzer may name; only ids whose sales cannot sell. */
  ids: string[];
  /** Valid customer tokens. */
  customers: string[];
  /** An admin token: sent only with clean queries, which cannot change anything. */
  admin: string;
  /** Forged, expired, alg-none, malformed… tokens. */
  hostile: string[];
}

export interface FuzzCase {
  kind: string;
  method: string;
  /** Path and query string. */
  path: string;
  headers: Record<string, string>;
  body?: string;
  /** Send the body in chunks without Content-Length. */
  chunked?: boolean;
  /** The server may close the connection before the client finishes sending (oversized bodies, huge headers). */
  mayDrop?: boolean;
}

const STRINGS = [
  '', ' ', 'x', 'null', 'undefined', 'true', '0', '-1', '1e309', 'NaN', 'Infinity', '__proto__', 'constructor', '{"a":1}', '[]',
  "' OR 1=1 --", '"; DROP TABLE orders; --', '<script>alert(1)</script>', '../../etc/passwd', '%00', '\u0000', 'a\u0000b', '\u202eevil',
  '\ud83d\ude00\ud83d\udd25', 'ñandú', '漢字テスト', '\ufeffbom', 'zero\u200bwidth', '\r\n\t', 'x'.repeat(64), 'y'.repeat(65), 'k'.repeat(129),
  'z'.repeat(5000), '${jndi:ldap://example.invalid/a}', '{{7*7}}', 'mallory@example.com', 'MALLORY@EXAMPLE.COM', 'a@b', 'no-at-sign',
  '+919812345678', '12345', '2026-11-29T00:00:00.000Z', '1970-01-01T00:00:00Z', '9999-12-31T23:59:59.999Z', 'tomorrow', '2026-02-30T00:00:00Z',
  '9'.repeat(40), '-9223372036854775809', 'ZZ', 'USD', 'INR', 'us', 'password123', 'correct horse battery staple', '\ud800', 'a\udfffb',
];
const INTS = [0, 1, 2, 3, -1, -2, 100, 101, 1000, 1001, 2147483647, -2147483648, 10_000_000, 10_000_001];
const INT_TEXT = ['2147483648', '-2147483649', '99999999999999999999', '1e3', '0x10', '01', '-0', '1.0', '1.5'];
const FLOATS = [1.5, -0.5, 1e308, -1e308, 5e-324, 0.1, 3.4e38];
const JSON_NUMBERS = [2 ** 53 + 2, -(2 ** 53) - 2, 1e308, -1e308, 1e-300, -0, 0.5, 2 ** 31, -(2 ** 31) - 1, 2 ** 63];

function randomString(rng: Rng, w: FuzzWorld): string {
  const r = rng();
  if (r < 0.3 && w.ids.length) {
    const id = pick(rng, w.ids);
    return pick(rng, [id, `${id}.x`, `${id}.${id}`, id.toUpperCase(), `${id} `, id.slice(0, -1), `${id}\u0000`, `x.${id}`]);
  }
  if (r < 0.85) return pick(rng, STRINGS);
  // Random code points, surrogates and controls included.
  let s = '';
  for (let i = int(rng, 40); i > 0; i--) s += String.fromCharCode(int(rng, rng() < 0.7 ? 0x80 : 0xffff));
  return s;
}

/** A GraphQL string literal; JSON escaping is valid GraphQL escaping for what we generate. */
const gqlString = (s: string) => JSON.stringify(s);

/** An input value as GraphQL literal text: usually of the right type, sometimes not. */
function literal(type: GraphQLInputType, rng: Rng, w: FuzzWorld, depth = 0): string {
  if (chance(rng, 0.08)) return wrongLiteral(rng, w);
  if (isNonNullType(type)) return chance(rng, 0.04) ? 'null' : literal(type.ofType, rng, w, depth);
  if (isListType(type)) {
    if (chance(rng, 0.3)) return literal(type.ofType, rng, w, depth + 1);
    const n = pick(rng, [0, 1, 2, 3, 5, 101]);
    return `[${Array.from({ length: depth > 2 ? Math.min(n, 2) : n }, () => literal(type.ofType, rng, w, depth + 1)).join(', ')}]`;
  }
  if (isInputObjectType(type)) {
    if (depth > 4) return '{}';
    const fields = Object.values(type.getFields())
      .filter(() => chance(rng, 0.88))
      .map((f) => `${f.name}: ${literal(f.type, rng, w, depth + 1)}`);
    if (chance(rng, 0.1)) fields.push(`${pick(rng, ['extra', '__proto__', 'constructor', 'quantity'])}: ${wrongLiteral(rng, w)}`);
    return `{ ${fields.join(', ')} }`;
  }
  if (isEnumType(type)) return chance(rng, 0.85) ? pick(rng, type.getValues()).name : pick(rng, ['NOPE', 'active', '"ACTIVE"', '0']);
  switch (type.name) {
    case 'Int':
      return chance(rng, 0.8) ? String(pick(rng, INTS)) : pick(rng, INT_TEXT);
    case 'Float':
      return String(pick(rng, FLOATS));
    case 'Boolean':
      return pick(rng, ['true', 'false']);
    case 'BigInt':
      return gqlString(pick(rng, ['1', '-1', '9'.repeat(40), 'abc', '1.5']));
    default:
      return gqlString(randomString(rng, w));
  }
}

function wrongLiteral(rng: Rng, w: FuzzWorld): string {
  return pick(rng, [
    () => 'null', () => String(pick(rng, INTS)), () => pick(rng, INT_TEXT), () => String(pick(rng, FLOATS)), () => 'true',
    () => gqlString(randomString(rng, w)), () => '[1, "a", null]', () => '{ a: 1 }', () => 'ENUM_VALUE', () => '$undeclared',
    () => '"""block\nstring"""',
  ])();
}

/** A variable's value as JSON: usually of the right type, sometimes hostile. */
function jsonValue(type: GraphQLInputType, rng: Rng, w: FuzzWorld, depth = 0): unknown {
  if (chance(rng, 0.08)) return wrongJson(rng, w);
  if (isNonNullType(type)) return chance(rng, 0.04) ? null : jsonValue(type.ofType, rng, w, depth);
  if (isListType(type)) {
    if (chance(rng, 0.3)) return jsonValue(type.ofType, rng, w, depth + 1);
    const n = pick(rng, [0, 1, 2, 3, 101, 400]);
    return Array.from({ length: depth > 2 ? Math.min(n, 2) : n }, () => jsonValue(type.ofType, rng, w, depth + 1));
  }
  if (isInputObjectType(type)) {
    const out: Record<string, unknown> = {};
    if (depth > 4) return out;
    for (const f of Object.values(type.getFields())) if (chance(rng, 0.88)) out[f.name] = jsonValue(f.type, rng, w, depth + 1);
    if (chance(rng, 0.1)) out[pick(rng, ['extra', '__proto__', 'constructor', 'prototype'])] = wrongJson(rng, w);
    return out;
  }
  if (isEnumType(type)) return chance(rng, 0.85) ? pick(rng, type.getValues()).name : pick(rng, ['NOPE', 'active', 0, null]);
  switch (type.name) {
    case 'Int':
      return chance(rng, 0.75) ? pick(rng, INTS) : pick(rng, JSON_NUMBERS);
    case 'Float':
      return pick(rng, [...FLOATS, ...JSON_NUMBERS]);
    case 'Boolean':
      return chance(rng, 0.9) ? chance(rng, 0.5) : pick(rng, ['true', 1, 0]);
    default:
      return randomString(rng, w);
  }
}

function wrongJson(rng: Rng, w: FuzzWorld): unknown {
  return pick(rng, [
    () => null, () => pick(rng, JSON_NUMBERS), () => randomString(rng, w), () => [], () => ({}), () => [null, 1, 'a'], () => true,
    () => ({ ['__proto__']: { admin: true }, constructor: { prototype: { polluted: 1 } } }),
    () => deepArray(int(rng, 3000) + 10), () => ({ a: { b: { c: { d: [1, { e: 'f' }] } } } }),
  ])();
}

function deepArray(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

interface Doc {
  query: string;
  variables?: Record<string, unknown>;
  operationName?: string;
  op: 'query' | 'mutation' | 'subscription';
}

/** A selection set for `type`, to a random depth; unions get inline fragments of some members. */
function selection(type: GraphQLOutputType, rng: Rng, w: FuzzWorld, depth: number, maxDepth: number, vars: VarSink): string {
  const named = getNamedType(type);
  if (isLeafType(named)) return '';
  if (isUnionType(named)) {
    const parts = ['__typename'];
    for (const member of named.getTypes()) if (chance(rng, 0.7)) parts.push(`... on ${member.name} ${selection(member, rng, w, depth, maxDepth, vars)}`);
    if (chance(rng, 0.05)) parts.push('... on Query { serverTime }');
    return `{ ${parts.join(' ')} }`;
  }
  if (!isObjectType(named) && !isInterfaceType(named)) return '';
  const fields = Object.values(named.getFields());
  const leaves = fields.filter((f) => isLeafType(getNamedType(f.type)));
  const pool = depth >= maxDepth ? leaves : fields;
  const chosen = pool.length === 0 ? [] : Array.from({ length: 1 + int(rng, Math.min(pool.length, 5)) }, () => pick(rng, pool));
  const parts = chosen.map((f) => fieldText(f, rng, w, depth + 1, maxDepth, vars));
  if (parts.length === 0 || chance(rng, 0.1)) parts.push('__typename');
  if (chance(rng, 0.03)) parts.push(pick(rng, ['nope', '__schema { types { name } }', 'id @skip(if: true)', 'id @include(if: $missing)', 'id @deprecated']));
  return `{ ${parts.join(' ')} }`;
}

class VarSink {
  readonly defs: string[] = [];
  readonly values: Record<string, unknown> = {};
  constructor(private readonly rng: Rng, private readonly w: FuzzWorld) {}
  add(type: GraphQLInputType): string {
    const name = `v${this.defs.length}`;
    // Sometimes the declared type is not the argument's: a mismatch validation must catch.
    const declared = chance(this.rng, 0.06) ? pick(this.rng, ['Int', 'String!', '[ID!]!', 'Nope', 'PurchaseInput', 'Boolean']) : String(type);
    this.defs.push(`$${name}: ${declared}`);
    if (!chance(this.rng, 0.05)) this.values[name] = jsonValue(type, this.rng, this.w);
    return `$${name}`;
  }
}

function argsText(args: readonly GraphQLArgument[], rng: Rng, w: FuzzWorld, vars: VarSink): string {
  const parts: string[] = [];
  for (const a of args) {
    // Required arguments are sometimes missing, optional ones often.
    if (chance(rng, isNonNullType(a.type) && a.defaultValue === undefined ? 0.06 : 0.5)) continue;
    parts.push(`${a.name}: ${chance(rng, 0.5) ? vars.add(a.type) : literal(a.type, rng, w)}`);
  }
  if (chance(rng, 0.04)) parts.push(`${pick(rng, ['unknown', 'first', 'id'])}: ${wrongLiteral(rng, w)}`);
  return parts.length ? `(${parts.join(', ')})` : '';
}

function fieldText(f: GraphQLField<unknown, unknown>, rng: Rng, w: FuzzWorld, depth: number, maxDepth: number, vars: VarSink): string {
  const alias = chance(rng, 0.1) ? `a${int(rng, 1000)}: ` : '';
  return `${alias}${f.name}${argsText(f.args, rng, w, vars)} ${selection(f.type, rng, w, depth, maxDepth, vars)}`;
}

/** A document for one, two or three root fields of a random operation type, built from the schema. */
export function schemaDocument(rng: Rng, w: FuzzWorld): Doc {
  const op = chance(rng, 0.55) ? 'query' : chance(rng, 0.93) ? 'mutation' : 'subscription';
  const root = op === 'query' ? w.schema.getQueryType()! : op === 'mutation' ? w.schema.getMutationType()! : w.schema.getSubscriptionType()!;
  const fields = Object.values(root.getFields());
  const vars = new VarSink(rng, w);
  const maxDepth = 1 + int(rng, chance(rng, 0.9) ? 6 : 16);
  const count = op === 'subscription' ? 1 : 1 + int(rng, chance(rng, 0.8) ? 1 : 3);
  const body = Array.from({ length: count }, () => fieldText(pick(rng, fields), rng, w, 0, maxDepth, vars)).join(' ');
  const name = chance(rng, 0.5) ? ` Fuzz${int(rng, 100)}` : '';
  const defs = vars.defs.length ? `(${vars.defs.join(', ')})` : '';
  return { op, query: `${op}${name}${defs} { ${body} }`, variables: vars.values };
}

const INSERTIONS = ['{', '}', '(', ')', '[', ']', ':', '$', '...', '@skip', '@include(if: $x)', '"', '"""', '\\', '#', ',', '!', '=', '|', '&',
  'mutation', 'query', 'subscription', 'fragment', 'on', 'null', '99999999999999999999', '-1', '\u0000', '\ud83d\ude00', '\ufeff', '\u2028', ' ', '\n'];

/** The document with one to three random edits: deletions, insertions, duplications, swaps, truncation. */
export function mutateText(text: string, rng: Rng): string {
  let s = text;
  for (let n = 1 + int(rng, 3); n > 0; n--) {
    const at = int(rng, s.length + 1);
    switch (int(rng, 5)) {
      case 0:
        s = s.slice(0, at) + s.slice(at + 1 + int(rng, 8));
        break;
      case 1:
        s = s.slice(0, at) + pick(rng, INSERTIONS) + s.slice(at);
        break;
      case 2: {
        const len = 1 + int(rng, 30);
        s = s.slice(0, at) + s.slice(at, at + len) + s.slice(at);
        break;
      }
      case 3: {
        const b = int(rng, s.length + 1);
        const [i, j] = at < b ? [at, b] : [b, at];
        if (j > i) s = s.slice(0, i) + s[j - 1] + s.slice(i + 1, j - 1) + s[i] + s.slice(j);
        break;
      }
      default:
        s = s.slice(0, at);
    }
  }
  return s;
}

// Built once: a case picks one of many bodies, and building them all each time would dominate the run.
const DEEP_ARRAY_VARIABLES = `{"query":"{ serverTime }","variables":${'['.repeat(20_000)}${']'.repeat(20_000)}}`;
const DEEP_ARRAY_BODY = `${'['.repeat(30_000)}${']'.repeat(30_000)}`;
const DEEP_OBJECT_VARIABLES = `{"query":"{ serverTime }","variables":${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`;

const JSON_HEADERS = { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' };

function postJson(kind: string, body: string, extra: Record<string, string> = {}): FuzzCase {
  return { kind, method: 'POST', path: '/graphql', headers: { ...JSON_HEADERS, ...extra }, body };
}

/** A token for a case: none, a customer's, a hostile one, or (clean queries only) the admin's. */
function auth(rng: Rng, w: FuzzWorld, adminAllowed: boolean): Record<string, string> {
  const r = rng();
  if (r < 0.25) return {};
  if (r < 0.6) return { authorization: `Bearer ${pick(rng, w.customers)}` };
  if (adminAllowed && r < 0.7) return { authorization: `Bearer ${w.admin}` };
  const h = pick(rng, w.hostile);
  return { authorization: chance(rng, 0.85) ? `Bearer ${h}` : pick(rng, [h, `bearer ${h}`, `Bearer  ${h}`, 'Bearer', 'Bearer ', `Basic ${Buffer.from('a:b').toString('base64')}`, `Bearer ${h}, Bearer ${h}`]) };
}

const TOPLEVEL_QUERIES = ['serverTime', 'me { id }', 'sales { edges { cursor } }', 'products { edges { cursor } }'];

/** Builds case `index` of the corpus; every category of hostile request is represented. */
export function buildCase(rng: Rng, w: FuzzWorld): FuzzCase {
  const r = rng();
  // Schema-driven documents, as is or mutated: most of the corpus.
  if (r < 0.58) {
    const doc = schemaDocument(rng, w);
    const mutated = chance(rng, 0.3);
    const query = mutated ? mutateText(doc.query, rng) : doc.query;
    const clean = !mutated && doc.op === 'query';
    const payload: Record<string, unknown> = { query, variables: doc.variables };
    if (chance(rng, 0.05)) payload.operationName = pick(rng, ['Nope', 'Fuzz1', 1, null, { a: 1 }]);
    if (chance(rng, 0.03)) payload.extensions = pick(rng, ['x', { persistedQuery: { version: 1, sha256Hash: 'abc' } }, [1]]);
    if (chance(rng, 0.15) && doc.op === 'query') {
      const params = new URLSearchParams({ query, variables: JSON.stringify(doc.variables ?? {}) });
      return { kind: mutated ? 'schema-mutated-get' : 'schema-get', method: 'GET', path: `/graphql?${params}`, headers: { accept: 'application/json', ...auth(rng, w, clean) } };
    }
    return postJson(mutated ? 'schema-mutated' : `schema-${doc.op}`, JSON.stringify(payload), auth(rng, w, clean));
  }
  const a = auth(rng, w, false);
  const category = pick(rng, ['json', 'content-type', 'method', 'oversize', 'deep', 'wide', 'aliases', 'batch', 'fragments', 'introspection', 'directives', 'variables', 'headers'] as const);
  switch (category) {
    case 'json': {
      const good = JSON.stringify({ query: '{ serverTime }' });
      const body = pick(rng, [
        '', ' ', 'null', 'true', '123', '"{ serverTime }"', '{', '{"query":', good.slice(0, int(rng, good.length)), `${good}garbage`, `\ufeff${good}`,
        '{"query": 5}', '{"query": null}', '{"query": ["{ serverTime }"]}', '{"query": {"a": 1}}', '{"query":"{ serverTime }","variables":"{"}',
        '{"query":"{ serverTime }","variables":[1,2]}', '{"query":"{ serverTime }","variables":"null"}', '{"query":"{ serverTime }","operationName":7}',
        '{"query":"{ serverTime }","extensions":"nope"}', '{"query":"{ serverTime }","query":"{ me { id } }"}', '{"__proto__":{"query":"{ serverTime }"}}',
        DEEP_ARRAY_VARIABLES, DEEP_ARRAY_BODY, DEEP_OBJECT_VARIABLES, '{"query":"\\ud800"}', '{"query":"\u0000"}',
        '[]', '[null]', '[1,2,3]', `[${good},"x"]`, '{"query":"{ serverTime }"}'.repeat(3), 'NaN', '{"query":"{ serverTime }",}',
      ]);
      return postJson('json', body, a);
    }
    case 'content-type': {
      const body = pick(rng, [JSON.stringify({ query: '{ serverTime }' }), 'query={serverTime}', '{ serverTime }', '<q>{ serverTime }</q>', '\u0000\u0001\u0002']);
      const type = pick(rng, [
        'text/plain', 'application/xml', 'application/graphql', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=xyz', 'multipart/form-data',
        'application/json; charset=utf-16', 'application/json; charset=bogus', 'application/graphql-response+json', 'application/octet-stream', '', '*/*',
        'application/json, text/plain', 'application/JSON', 'text/event-stream',
      ]);
      const headers: Record<string, string> = { ...a, accept: pick(rng, ['application/json', 'text/event-stream', 'multipart/mixed', 'text/html', '*/*', 'image/png', '']) };
      if (type) headers['content-type'] = type;
      return { kind: 'content-type', method: 'POST', path: '/graphql', headers, body };
    }
    case 'method': {
      const method = pick(rng, ['GET', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS']);
      const q = pick(rng, ['{ serverTime }', 'mutation { cancelOrder(orderId: "x") { __typename } }', '{', '', 'x'.repeat(3000), '{ me { id } }']);
      const path = pick(rng, [`/graphql?query=${encodeURIComponent(q)}`, '/graphql', '/graphql?variables=%7B', `/graphql?query=${encodeURIComponent(q)}&variables=${encodeURIComponent('{"a":')}`,
        '/graphql?query=%7BserverTime%7D&operationName=Nope', '/graphql?extensions=%7B%22persistedQuery%22%3A1%7D', '/graphql/../graphql', '/graphql%00', '/metrics?x=1', '/nope', '/graphql?query=%E0%A4%A']);
      const headers: Record<string, string> = { ...a, accept: pick(rng, ['application/json', 'text/html', 'text/event-stream', '*/*']) };
      if (method === 'OPTIONS') Object.assign(headers, { origin: pick(rng, ['https://evil.example', 'null', 'http://localhost']), 'access-control-request-method': 'POST' });
      return { kind: `method-${method}`, method, path, headers, body: method === 'GET' || method === 'HEAD' ? undefined : pick(rng, ['', JSON.stringify({ query: q })]) };
    }
    case 'oversize': {
      const size = 100_001 + int(rng, 400_000);
      const body = pick(rng, [
        () => JSON.stringify({ query: '{ serverTime }', variables: { pad: 'x'.repeat(size) } }), () => JSON.stringify({ query: `{ serverTime ${' '.repeat(size)} }` }), () => 'x'.repeat(size),
      ])();
      return { ...postJson('oversize', body, a), chunked: chance(rng, 0.4), mayDrop: true };
    }
    case 'deep': {
      const depth = pick(rng, [13, 20, 50, 200, 700]);
      let q = 'id';
      for (let i = 0; i < depth; i++) q = `${i % 2 ? 'items' : 'sale'} { ${q} }`;
      const id = w.ids.length ? pick(rng, w.ids) : 'x';
      return postJson('deep', JSON.stringify({ query: `{ saleItem(id: ${gqlString(id)}) { ${q} } }` }), a);
    }
    case 'wide': {
      const n = pick(rng, [200, 1000, 3000]);
      const field = pick(rng, ['serverTime', '__typename', 'me { id }', `sale(id: "x") { id }`, 'products { edges { cursor } }']);
      return postJson('wide', JSON.stringify({ query: `{ ${Array.from({ length: n }, () => field).join(' ')} }` }), a);
    }
    case 'aliases': {
      const n = pick(rng, [31, 100, 1000]);
      const field = pick(rng, [
        'serverTime', 'me { id }', `cancelOrder(orderId: "nope") { __typename }`,
        `purchase(input: { saleItemId: ${gqlString(w.ids.length ? pick(rng, w.ids) : 'x')}, quantity: 1, idempotencyKey: "alias" }) { __typename }`,
        `login(email: "a@b.example", password: "wrong-password-1") { token }`,
      ]);
      const op = /purchase|cancelOrder|login/.test(field) ? 'mutation' : 'query';
      return postJson('aliases', JSON.stringify({ query: `${op} { ${Array.from({ length: n }, (_, i) => `a${i}: ${field}`).join(' ')} }` }), a);
    }
    case 'batch': {
      const n = pick(rng, [2, 3, 10, 100, 1000]);
      const one = { query: pick(rng, TOPLEVEL_QUERIES).replace(/^/, '{ ') + ' }' };
      return postJson('batch', JSON.stringify(Array.from({ length: n }, () => (chance(rng, 0.1) ? { query: 'mutation { cancelOrder(orderId: "x") { __typename } }' } : one))), a);
    }
    case 'fragments': {
      const n = 5 + int(rng, 30);
      const variant = int(rng, 3);
      let q: string;
      if (variant === 0) {
        // A "billion laughs": each fragment spreads the next twice.
        q = `{ ...F0 } ${Array.from({ length: n }, (_, i) => `fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }`).join(' ')} fragment F${n} on Query { serverTime }`;
      } else if (variant === 1) {
        q = `{ ...A } fragment A on Query { ...B } fragment B on Query { ...A serverTime }`;
      } else {
        q = `{ ...F0 } ${Array.from({ length: n }, (_, i) => `fragment F${i} on Query { serverTime a${i}: serverTime ...F${i + 1} }`).join(' ')} fragment F${n} on Query { __typename }`;
      }
      return postJson('fragments', JSON.stringify({ query: q }), a);
    }
    case 'introspection': {
      const q = pick(rng, [
        '{ __schema { types { name fields { name args { name type { name } } } } } }', '{ __type(name: "Mutation") { fields { name } } }',
        `{ __schema { types { fields { type { fields { type { fields { type { fields { type { name } } } } } } } } } } }`, '{ __typename }',
      ]);
      return postJson('introspection', JSON.stringify({ query: q }), a);
    }
    case 'directives': {
      const n = pick(rng, [10, 51, 500]);
      const d = pick(rng, ['@skip(if: false)', '@include(if: true)', '@deprecated', '@nope', '@skip(if: $v)', '@specifiedBy(url: "x")']);
      return postJson('directives', JSON.stringify({ query: `query($v: Boolean) { serverTime ${Array.from({ length: n }, () => d).join(' ')} }`, variables: { v: chance(rng, 0.5) } }), a);
    }
    case 'variables': {
      const vars: Record<string, unknown> = {};
      for (let i = int(rng, 400); i > 0; i--) vars[`v${i}`] = wrongJson(rng, w);
      const defs = Object.keys(vars).slice(0, 300).map((k) => `$${k}: ${pick(rng, ['Int', 'String', 'ID!', '[Int]', 'PurchaseInput', 'Boolean'])}`);
      return postJson('variables', JSON.stringify({ query: `query${defs.length ? `(${defs.join(', ')})` : ''} { serverTime }`, variables: vars }), a);
    }
    case 'headers': {
      const headers: Record<string, string> = { ...JSON_HEADERS };
      const variant = int(rng, 4);
      if (variant === 0) headers.authorization = `Bearer ${'a'.repeat(pick(rng, [4000, 20_000]))}`;
      else if (variant === 1) headers['x-forwarded-for'] = Array.from({ length: 200 }, (_, i) => `10.0.${i % 256}.1`).join(', ');
      else if (variant === 2) headers.cookie = 'x'.repeat(15_000);
      else headers['content-length'] = pick(rng, ['-1', '1e6', '99999999999999999999']);
      return { kind: 'headers', method: 'POST', path: '/graphql', headers, body: JSON.stringify({ query: '{ serverTime me { id } }' }), mayDrop: true };
    }
  }
}
