import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { API_COMMAND } from '../../load/harness/server-process.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A free TCP port on the loopback (free when asked; good enough for a test's own processes). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** One API server process (`node dist/main.js`, built by the suite's global setup), as production runs it. */
export interface ApiProcess {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly exited: Promise<number | null>;
  /** The last lines it wrote, for failure messages. */
  tail(): string;
  /** kill -9: no shutdown hook runs, in-flight work is lost mid-step. */
  crash(): Promise<void>;
  /** SIGTERM and wait (SIGKILL after 15 s). */
  stop(): Promise<void>;
}

/**
 * Starts the API with `env` on a port of its own and waits until `/ready` answers 200. The
 * database should exist and be migrated already when several processes start together.
 */
export async function spawnApi(env: Record<string, string>, opts: { port?: number; timeoutMs?: number } = {}): Promise<ApiProcess> {
  const port = opts.port ?? (await freePort());
  const child: ChildProcess = spawn(process.execPath, [...API_COMMAND.nodeArgs, API_COMMAND.entry], {
    cwd: REPO_ROOT,
    env: { ...process.env, NODE_ENV: 'test', WORKERS: '1', ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const keep = (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-6000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let code: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve((code = c))));
  const url = `http://127.0.0.1:${port}`;

  const deadline = Date.now() + (opts.timeoutMs ?? 45_000);
  for (;;) {
    if (code !== undefined) throw new Error(`API process exited with ${code} before it was ready:\n${log}`);
    try {
      if ((await fetch(`${url}/ready`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`API process not ready within ${opts.timeoutMs ?? 45_000} ms:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    url,
    port,
    pid: child.pid!,
    exited,
    tail: () => log,
    crash: async () => {
      if (code !== undefined) return;
      child.kill('SIGKILL');
      await exited;
    },
    stop: async () => {
      if (code !== undefined) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * A TCP proxy in front of PostgreSQL that can be cut: `cut()` destroys every open connection and
 * stops listening, so the server sees its sockets die and new connections refused, as when the
 * database host goes away; `restore()` listens again on the same port.
 */
export class PgProxy {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();

  private constructor(readonly port: number, private target: { host: string; port: number }) {}

  static async start(target: { host: string; port: number }): Promise<PgProxy> {
    const proxy = new PgProxy(await freePort(), target);
    await proxy.restore();
    return proxy;
  }

  /** The database URL `url` reached through the proxy. */
  urlFor(url: string): string {
    const u = new URL(url);
    u.host = `127.0.0.1:${this.port}`;
    return u.toString();
  }

  get isCut(): boolean {
    return this.server === null;
  }

  async restore(): Promise<void> {
    if (this.server) return;
    const server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
  }

  /** New connections go to `target`; open ones are cut, so clients reconnect there (a failover). */
  switchTo(target: { host: string; port: number }): void {
    this.target = target;
    for (const s of this.sockets) s.destroy();
  }

  async cut(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  async close(): Promise<void> {
    await this.cut();
  }
}

/**
 * How a {@link FaultProxy} treats connections: `forward` passes bytes both ways; `blackhole`
 * accepts new connections and holds every byte of old and new ones without an answer (as a host
 * that stopped responding; nothing is dropped, so what was sent arrives once it is `forward`
 * again, as TCP would deliver it); `close` closes every connection, and each new one at once;
 * `refuse` stops listening, so connections are refused.
 */
export type ProxyMode = 'forward' | 'blackhole' | 'close' | 'refuse';

interface ProxyLink {
  client: Socket;
  upstream: Socket | null;
  flowing: boolean;
}

/** A TCP proxy in front of any server (PostgreSQL, Redis) whose behaviour a test switches with `set`. */
export class FaultProxy {
  private server: Server | null = null;
  private current: ProxyMode = 'forward';
  private readonly links = new Set<ProxyLink>();

  private constructor(readonly port: number, private readonly target: { host: string; port: number }) {}

  static async start(target: { host: string; port: number }): Promise<FaultProxy> {
    const proxy = new FaultProxy(await freePort(), target);
    await proxy.set('forward');
    return proxy;
  }

  /** `url` (postgres://, redis://) reached through the proxy. */
  urlFor(url: string): string {
    const u = new URL(url);
    u.host = `127.0.0.1:${this.port}`;
    return u.toString();
  }

  get mode(): ProxyMode {
    return this.current;
  }

  async set(mode: ProxyMode): Promise<void> {
    this.current = mode;
    if (mode === 'refuse' || mode === 'close') {
      for (const link of this.links) this.drop(link);
    }
    if (mode === 'refuse') {
      const server = this.server;
      this.server = null;
      if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
      return;
    }
    if (!this.server) await this.listen();
    for (const link of this.links) {
      if (mode === 'forward') this.flow(link);
      else this.hold(link);
    }
  }

  async close(): Promise<void> {
    await this.set('refuse');
  }

  private async listen(): Promise<void> {
    const server = createServer((client) => {
      const link: ProxyLink = { client, upstream: null, flowing: false };
      this.links.add(link);
      client.on('error', () => undefined);
      client.on('close', () => this.drop(link));
      if (this.current === 'close') this.drop(link);
      else if (this.current === 'forward') this.flow(link);
      else this.hold(link);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
  }

  /** Connects upstream if not yet, and pipes both ways (resuming what `hold` paused, buffered bytes included). */
  private flow(link: ProxyLink): void {
    if (!this.links.has(link) || link.flowing) return;
    link.flowing = true;
    if (!link.upstream) {
      const upstream = connect(this.target.port, this.target.host);
      link.upstream = upstream;
      upstream.on('error', () => undefined);
      upstream.on('close', () => this.drop(link));
    }
    link.client.pipe(link.upstream);
    link.upstream.pipe(link.client);
  }

  /** Stops both directions; bytes stay buffered (in the streams, then in the kernel) until `flow`. */
  private hold(link: ProxyLink): void {
    link.flowing = false;
    link.client.unpipe();
    link.client.pause();
    if (link.upstream) {
      link.upstream.unpipe();
      link.upstream.pause();
    }
  }

  private drop(link: ProxyLink): void {
    if (!this.links.delete(link)) return;
    link.client.destroy();
    link.upstream?.destroy();
  }
}
