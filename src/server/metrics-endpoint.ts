import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config.js';

type MetricsConfig = Pick<Config, 'NODE_ENV' | 'HOST' | 'METRICS_PORT' | 'METRICS_HOST' | 'METRICS_TOKEN'>;

/**
 * Who may read `/metrics` (the contract: "Outside production it is open on the API port; in
 * production it is served on `METRICS_PORT` or requires `Authorization: Bearer <METRICS_TOKEN>`"):
 *
 * - outside production: open, on the API port and on `METRICS_PORT` when set;
 * - in production, on the API port: only with `Authorization: Bearer <METRICS_TOKEN>` (401 without
 *   it); with no `METRICS_TOKEN` it is not served there at all (404, as for any unknown path);
 * - `METRICS_PORT` (any environment): a listener of its own that serves `/metrics` only, for a
 *   network the public does not reach; in production it asks for the token too when one is set.
 *
 * Production with neither set serves /metrics nowhere and says so in the log at start.
 */
export class MetricsEndpoint {
  private server: Server | null = null;
  private readonly production: boolean;
  private readonly tokenDigest: Buffer | null;

  constructor(private readonly registry: Registry, private readonly config: MetricsConfig, private readonly log: Logger) {
    this.production = config.NODE_ENV === 'production';
    this.tokenDigest = config.METRICS_TOKEN ? digest(config.METRICS_TOKEN) : null;
  }

  /** `/metrics` asked on the API port. */
  async serveOnApiPort(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.production && this.tokenDigest === null) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not found\n');
      return;
    }
    await this.serve(req, res);
  }

  /** Starts the `METRICS_PORT` listener, if configured; its URL, or null. */
  async listen(): Promise<string | null> {
    const { METRICS_PORT: port, METRICS_HOST, HOST } = this.config;
    if (port === undefined) {
      if (this.production && this.tokenDigest === null) {
        this.log.warn('/metrics is not served: in production set METRICS_PORT (a port of its own) or METRICS_TOKEN (bearer token on the API port)');
      }
      return null;
    }
    const host = METRICS_HOST ?? HOST;
    const server = createServer((req, res) => {
      if (req.url?.split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not found\n');
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('Method not allowed\n');
        return;
      }
      this.serve(req, res).catch((err: unknown) => {
        this.log.error({ err }, 'serving /metrics failed');
        if (!res.headersSent) res.writeHead(500).end();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    const url = `http://${host}:${(server.address() as AddressInfo).port}/metrics`;
    this.log.info({ url }, '/metrics listening on its own port');
    return url;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.production && this.tokenDigest !== null && !this.authorized(req.headers.authorization)) {
      res.writeHead(401, { 'www-authenticate': 'Bearer realm="metrics"', 'content-type': 'text/plain; charset=utf-8' }).end('Unauthorized\n');
      return;
    }
    const body = await this.registry.metrics();
    res.writeHead(200, { 'content-type': this.registry.contentType, 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : body);
  }

  /** `Bearer <METRICS_TOKEN>`, compared in constant time (digests of equal length). */
  private authorized(header: string | undefined): boolean {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header?.trim() ?? '');
    return m !== null && timingSafeEqual(digest(m[1]), this.tokenDigest!);
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
