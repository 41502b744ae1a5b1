import http, { type RefinedResponse } from 'k6/http';
import { persistedIdsByName, requestBodyFor } from '../../harness/persisted-ids.ts';
import { GRAPHQL_URL, ORIGIN } from './env.ts';

export interface GraphqlBody {
  data?: Record<string, any> | null;
  errors?: { message: string; extensions?: Record<string, any> }[];
}

// The persisted documents `npm run codegen` lists (k6's open() reads them once, in the init
// context, relative to this file): operations are sent by id, as the Node harness sends them.
const persistedIds = persistedIdsByName(JSON.parse(open('../../../src/generated/graphql/persisted-documents.json')) as Record<string, string>);

/** POSTs one operation; `name` tags the request so thresholds can be set per operation. */
export function gql(query: string, variables: Record<string, unknown>, o: { token?: string; name: string }): { res: RefinedResponse<'text'>; body: GraphqlBody } {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' };
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  if (ORIGIN) headers.origin = ORIGIN;
  const res = http.post(GRAPHQL_URL, requestBodyFor(persistedIds, query, variables), { headers, tags: { name: o.name } });
  let body: GraphqlBody = {};
  try {
    body = JSON.parse(res.body as string) as GraphqlBody;
  } catch {
    // Reported through the status-code check.
  }
  return { res, body };
}

/** 'OK', the Rejected code, or the first GraphQL error's code of a `Success | Rejected` field. */
export function outcome(body: GraphqlBody, field: string): string {
  const value = body.data?.[field];
  if (value) return value.__typename === 'Rejected' ? String(value.code) : 'OK';
  return String(body.errors?.[0]?.extensions?.code ?? 'NO_DATA');
}
