import { usePrometheus } from '@graphql-yoga/plugin-prometheus';
import type { Plugin } from 'graphql-yoga';
import type { Registry } from 'prom-client';

/**
 * Yoga's Prometheus plugin on our registry: request counts and latency histograms per operation
 * (`graphql_envelop_request_total`, `graphql_envelop_request_duration`, `graphql_yoga_http_duration`,
 * error counts). The app serves /metrics itself, beside /health and /ready, so
 * the plugin's own endpoint is off.
 *
 * Left out on purpose: the per-phase histograms (parse, validate, context, execute: four more
 * histogram observations per request, ~5 % of a purchase's CPU in the profile, and parse and
 * validate are cache hits anyway), the request summary (quantiles computed in-process on every request, which
 * Prometheus derives from the histograms anyway), the deprecated-field counter (a document walk
 * per request), the `url` label (query strings would make one series per distinct URL) and the
 * error `path` label (list indices would make one series per position).
 * `operationName` is client-chosen; our clients name a handful of operations, and anonymous
 * ones count as `Anonymous`.
 */
export function graphqlMetrics(registry: Registry): Plugin {
  return usePrometheus({
    registry,
    endpoint: false,
    skipIntrospection: true,
    metrics: {
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
