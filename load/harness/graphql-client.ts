import { Pool } from 'undici';
import { requestBody } from './persisted.js';

export interface GraphqlReply {
  status: number;
  data?: Record<string, any> | null;
  errors?: { message: string; extensions?: Record<string, any> }[];
}

/**
 * GraphQL over HTTP on a keep-alive pool of `connections` sockets (one per simulated phone in a
 * closed loop). Request bodies are prebuilt strings so the load generator spends its CPU on
 * sending, not on serialising. `pageOrigin`: the `Origin` a browser would send, if any.
 */
export class GraphqlClient {
  private readonly pool: Pool;

  constructor(readonly origin: string, connections: number, private readonly pageOrigin = '') {
    assertLoopback(origin);
    this.pool = new Pool(origin, { connections, pipelining: 1, keepAliveTimeout: 60_000, headersTimeout: 30_000, bodyTimeout: 30_000 });
  }

  async post(body: string, token?: string, path = '/graphql'): Promise<GraphqlReply> {
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    if (this.pageOrigin) headers.origin = this.pageOrigin;
    const res = await this.pool.request({ origin: this.origin, path, method: 'POST', headers, body });
    const text = await res.body.text();
    let parsed: { data?: Record<string, any> | null; errors?: GraphqlReply['errors'] } = {};
    try {
      parsed = JSON.parse(text);
    } catch {
      // A non-JSON answer (a proxy error page, a crash) is reported by its HTTP status.
    }
    return { status: res.statusCode, data: parsed.data, errors: parsed.errors };
  }

  async gql(query: string, variables: Record<string, unknown> = {}, token?: string): Promise<GraphqlReply> {
    return this.post(requestBody(query, variables), token);
  }

  /** Like gql, but throws with the server's words when the operation did not produce data. */
  async must<T = any>(query: string, variables: Record<string, unknown>, token?: string): Promise<T> {
    const r = await this.gql(query, variables, token);
    if (!r.data || r.errors?.length) throw new Error(`GraphQL call failed (HTTP ${r.status}): ${JSON.stringify(r.errors ?? r.data)}`);
    return r.data as T;
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/**
 * The outcome code of a mutation answering a `Success | Rejected` union: 'OK', the Rejected code,
 * the first GraphQL error's extensions.code, or HTTP_<status>.
 */
export function outcomeOf(reply: GraphqlReply, field: string): { code: string; value: Record<string, any> | null } {
  const value = reply.data?.[field] ?? null;
  if (value) return { code: value.__typename === 'Rejected' ? String(value.code) : 'OK', value };
  if (reply.errors?.length) return { code: String(reply.errors[0].extensions?.code ?? 'GRAPHQL_ERROR'), value: null };
  return { code: `HTTP_${reply.status}`, value: null };
}

export function assertLoopback(origin: string): void {
  const host = new URL(origin).hostname;
  if (!/^(127(\.\d{1,3}){3}|localhost|\[::1\])$/.test(host)) throw new Error(`refusing to load ${origin}: the bench only targets this machine's loopback`);
}
