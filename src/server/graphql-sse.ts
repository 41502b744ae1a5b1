import type { IncomingMessage, ServerResponse } from 'node:http';
import { useGraphQLSSE } from '@graphql-yoga/plugin-graphql-sse';
import type { Plugin } from 'graphql-yoga';
import type { LoadShedder } from './load-shedding.js';

/** Where graphql-sse's protocol is served, both of its modes; `/graphql` keeps Yoga's own SSE (distinct connections). */
export const GRAPHQL_SSE_PATH = '/graphql/stream';

/**
 * graphql-sse's protocol (https://github.com/enisdenjo/graphql-sse/blob/master/PROTOCOL.md) at
 * `/graphql/stream`, in both of its modes:
 *
 * - single connection ("reservations"): PUT makes a reservation (its token), GET with the token
 *   opens the one event stream, each POST with the token starts an operation whose events come on
 *   that stream, DELETE with an `operationId` stops one. Reservations live in this process: behind
 *   a load balancer, a client's PUT, GET and POSTs must reach the same instance (sticky sessions).
 * - distinct connections: a POST with `Accept: text/event-stream` is its own stream, as at
 *   `/graphql` (Yoga's built-in SSE, which graphql-sse's client speaks too).
 *
 * Operations run through Yoga's enveloped pipeline (context, plugins, masking, rate limits) like
 * any other. For the load shedder an SSE request counts like the others while it is being served;
 * a subscription stops counting once subscribed (`withLoadShedding`), and the single-connection
 * mode's event stream, which only carries what its operations send, stops counting at once. The
 * per-address connection cap counts its TCP connection like any other.
 */
export class GraphqlSse {
  /** Open single-connection event streams, ended on shutdown (nothing else would end them). */
  private readonly streams = new Set<ServerResponse>();

  constructor(private readonly shedder: LoadShedder) {}

  plugin(): Plugin {
    const inner = useGraphQLSSE({ endpoint: GRAPHQL_SSE_PATH }) as Plugin;
    const onRequest = inner.onRequest!;
    return {
      ...inner,
      onRequest: (payload) => {
        const { request, serverContext } = payload;
        const { req, res } = serverContext as { req?: IncomingMessage; res?: ServerResponse };
        if (request.method === 'GET' && new URL(request.url).pathname === GRAPHQL_SSE_PATH && req && res) {
          this.shedder.release(req);
          this.streams.add(res);
          res.once('close', () => this.streams.delete(res));
        }
        return onRequest(payload);
      },
    };
  }

  /** Ends every single-connection event stream (the server is stopping; clients reconnect elsewhere). */
  close(): void {
    for (const res of this.streams) res.end();
    this.streams.clear();
  }
}
