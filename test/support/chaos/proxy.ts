import { createServer, connect, type Server, type Socket } from 'node:net';
import { freePort } from '../processes.js';

interface Link {
  client: Socket;
  upstream: Socket;
  /** Client bytes seen last, to match a pattern split across two chunks. */
  tail: string;
  /** Server→client bytes held back while this link is stalled (null: flowing). */
  held: Buffer[] | null;
}

/** A stall armed by {@link ChaosProxy.stallNextMatching}: the first connection whose client sends the pattern. */
export interface Stall {
  /** Resolves once a connection sent the pattern; its replies are held from then on. */
  readonly matched: Promise<void>;
  readonly isMatched: boolean;
  /** Delivers the held replies and lets the connection flow again (or just disarms, if nothing matched). */
  release(): void;
  /** Drops the held replies and closes that connection (the process behind it is dead or should see a reset). */
  drop(): void;
}

/**
 * A TCP proxy for the chaos test, in front of PostgreSQL or Redis:
 * - `cut()` / `restore()`: refuse and reset every connection (the host went away), then listen again;
 * - `retarget()`: send new connections to another server, resetting the open ones (a failover);
 * - `stallNextMatching()`: the next connection whose client sends a given text (e.g. the order
 *   INSERT) gets no reply until released — the statement runs and commits in PostgreSQL, but the
 *   API never hears so, which is how a test holds a process between commit and confirm.
 */
export class ChaosProxy {
  private server: Server | null = null;
  private readonly links = new Set<Link>();
  private armed: { pattern: string; onMatch: (link: Link) => void } | null = null;

  private constructor(readonly port: number, private target: { host: string; port: number }) {}

  static async start(target: { host: string; port: number }): Promise<ChaosProxy> {
    const proxy = new ChaosProxy(await freePort(), target);
    await proxy.restore();
    return proxy;
  }

  /** `url` (postgres://, redis://) reached through the proxy. */
  urlFor(url: string): string {
    const u = new URL(url);
    u.host = `127.0.0.1:${this.port}`;
    return u.toString();
  }

  get isCut(): boolean {
    return this.server === null;
  }

  get targetPort(): number {
    return this.target.port;
  }

  get connections(): number {
    return this.links.size;
  }

  async restore(): Promise<void> {
    if (this.server) return;
    const server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
  }

  async cut(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    this.dropAll();
    await closed;
  }

  /** New connections go to `target`; open ones are reset, so their clients reconnect there. */
  retarget(target: { host: string; port: number }): void {
    this.target = target;
    this.dropAll();
  }

  dropAll(): void {
    for (const link of [...this.links]) this.drop(link);
  }

  stallNextMatching(text: string): Stall {
    const pattern = text.toLowerCase();
    let link: Link | null = null;
    let released = false;
    let resolveMatched!: () => void;
    const matched = new Promise<void>((resolve) => (resolveMatched = resolve));
    const armed = {
      pattern,
      onMatch: (l: Link) => {
        link = l;
        l.held = [];
        this.armed = null;
        resolveMatched();
      },
    };
    this.armed = armed;
    const disarm = () => {
      if (this.armed === armed) this.armed = null;
    };
    return {
      matched,
      get isMatched() {
        return link !== null;
      },
      release: () => {
        disarm();
        if (released || !link) return;
        released = true;
        const held = link.held ?? [];
        link.held = null;
        if (!link.client.destroyed) for (const chunk of held) link.client.write(chunk);
      },
      drop: () => {
        disarm();
        if (released || !link) return;
        released = true;
        link.held = null;
        this.drop(link);
      },
    };
  }

  async close(): Promise<void> {
    this.armed = null;
    await this.cut();
  }

  private accept(client: Socket): void {
    const upstream = connect(this.target.port, this.target.host);
    const link: Link = { client, upstream, tail: '', held: null };
    this.links.add(link);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    client.on('close', () => this.drop(link));
    upstream.on('close', () => this.drop(link));
    client.on('data', (chunk: Buffer) => {
      const armed = this.armed;
      if (armed && link.held === null) {
        // Protocol text (a PostgreSQL Parse/Query message) is ASCII; latin1 keeps offsets 1:1.
        const text = link.tail + chunk.toString('latin1').toLowerCase();
        if (text.includes(armed.pattern)) armed.onMatch(link);
        link.tail = text.slice(-armed.pattern.length);
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (link.held) link.held.push(chunk);
      else client.write(chunk);
    });
  }

  private drop(link: Link): void {
    if (!this.links.delete(link)) return;
    link.client.destroy();
    link.upstream.destroy();
  }
}
