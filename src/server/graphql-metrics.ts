import { createCounter, createHistogram, usePrometheus } from '@graphql-yoga/plugin-prometheus';
import type { Plugin } from 'graphql-yoga';
import type { Registry } from 'prom-client';
import { operationLabel } from './known-operations.js';

type Labels = { operationName?: string; operationType?: string };

const OPERATION_TYPES = new Set(['query', 'mutation', 'subscription']);
const operationType = (type: string | undefined) => (type && OPERATION_TYPES.has(type) ? type : 'unknown');
const operationLabels = (params: Labels) => ({ operationName: operationLabel(params.operationName), operationType: operationType(params.operationType) });

/**
 * Yoga's Prometheus plugin on our registry: request counts and latency histograms per operation
 * (`graphql_envelop_request`, `graphql_envelop_request_duration`, `graphql_yoga_http_duration`,
 * `graphql_envelop_error_result`). The app serves /metrics itself, beside /health and /ready, so
 * the plugin's own endpoint is off.
 *
 * Every label is bounded whatever clients send: `operationName` is client-chosen (in the document
 * and in the request's `operationName`), so it is the operation's name only for the operations the
 * project knows (`src/server/known-operations.ts`: the persisted operations, GraphiQL's examples,
 * the live pages), `Anonymous` without a name and `other` for everything else; `operationType` is
 * one of query/mutation/subscription/unknown and `method` GET, POST or other. The fast lane and the
 * response cache observe `graphql_yoga_http_duration` themselves, through the same `operationLabel`.
 *
 * Left out on purpose: the per-phase histograms (parse, validate, context, execute: four more
 * histogram observations per request, ~5 % of a purchase's CPU in the profile, and parse and
 * validate are cache hits anyway), the request summary (quantiles computed in-process on every request, which
 * Prometheus derives from the histograms anyway), the deprecated-field counter (a document walk
 * per request), the `url` label (query strings would make one series per distinct URL) and the
 * error `path` label (list indices would make one series per position).
 */
export function graphqlMetrics(registry: Registry): Plugin {
  return usePrometheus({
    registry,
    endpoint: false,
    skipIntrospection: true,
    metrics: {
      graphql_envelop_request: createCounter({
        registry,
        counter: { name: 'graphql_envelop_request', help: 'Counts the amount of GraphQL requests executed through Envelop', labelNames: ['operationType', 'operationName'] },
        fillLabelsFn: operationLabels,
        phases: ['execute', 'subscribe'],
      }),
      graphql_envelop_request_duration: createHistogram({
        registry,
        histogram: { name: 'graphql_envelop_request_duration', help: 'Time spent on running the GraphQL operation from parse to execute', labelNames: ['operationType', 'operationName'] },
        fillLabelsFn: operationLabels,
        phases: ['execute', 'subscribe'],
      }),
      graphql_envelop_error_result: createCounter({
        registry,
        counter: { name: 'graphql_envelop_error_result', help: 'Counts the amount of errors reported from all phases', labelNames: ['operationType', 'operationName', 'phase'] },
        fillLabelsFn: (params: Labels & { errorPhase?: string }) => ({ ...operationLabels(params), phase: params.errorPhase ?? 'unknown' }),
        phases: ['parse', 'validate', 'context', 'execute', 'subscribe'],
      }),
      graphql_yoga_http_duration: createHistogram({
        registry,
        histogram: { name: 'graphql_yoga_http_duration', help: 'Time spent on HTTP connection', labelNames: ['operationName', 'operationType', 'method', 'statusCode'] },
        fillLabelsFn: (params: Labels & { request: Request; response: Response }) => ({
          ...operationLabels(params),
          method: params.request.method === 'GET' || params.request.method === 'POST' ? params.request.method : 'other',
          statusCode: params.response.status,
        }),
        phases: ['request'],
      }),
      graphql_envelop_request_time_summary: false,
      graphql_envelop_deprecated_field: false,
      graphql_envelop_execute_resolver: false,
      graphql_envelop_phase_parse: false,
      graphql_envelop_phase_validate: false,
      graphql_envelop_phase_context: false,
      graphql_envelop_phase_execute: false,
      graphql_envelop_phase_subscribe: false,
    },
    labels: { url: false, path: false },
  });
}
