import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';

const run = promisify(execFile);

/** Whether `port` can be bound on loopback right now. */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * A port whose cluster bus port (port + 10000) is free too. Taken from 20000..29999, below the
 * kernel's ephemeral range, so the bus port stays a valid port and outgoing connections of other
 * tests do not grab it meanwhile.
 */
async function freeClusterPort(taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 10000);
    if (taken.has(port) || taken.has(port + 10000) || taken.has(port - 10000)) continue;
    if ((await bindable(port)) && (await bindable(port + 10000))) return port;
  }
  throw new Error('no free port pair for a Redis Cluster node');
}

/** Throws a clear message when redis-server was built without cluster support or is missing. */
export async function assertClusterSupport(): Promise<void> {
  let version: string;
  try {
    version = (await run('redis-server', ['--version'])).stdout;
    await run('redis-cli', ['--version']);
  } catch {
    throw new Error('redis-server and redis-cli are needed for the Redis Cluster test (apt-get install redis-server)');
  }
  const major = Number(/v=(\d+)/.exec(version)?.[1] ?? 0);
  // redis-cli --cluster create exists from Redis 5; older ones need redis-trib.rb.
  if (major < 5) throw new Error(`Redis ${major} cannot run the cluster test: redis-cli --cluster needs Redis 5 or newer`);
}

/**
 * A throwaway Redis Cluster of `size` masters on loopback: one redis-server per node with its
 * cluster config and data in a temporary folder, joined by `redis-cli --cluster create`. `stop()`
 * kills the nodes and removes the folder.
 */
export class LocalRedisCluster {
  private readonly children: ChildProcess[] = [];
  private readonly dir = mkdtempSync(join(tmpdir(), 'fs-redis-cluster-'));
  readonly ports: number[] = [];
  private readonly onExit = () => {
    for (const child of this.children) child.kill('SIGKILL');
  };

  /** "host:port,..." as REDIS_CLUSTER_NODES expects. */
  get nodes(): string {
    return this.ports.map((p) => `127.0.0.1:${p}`).join(',');
  }

  static async start(size = 3): Promise<LocalRedisCluster> {
    await assertClusterSupport();
    const cluster = new LocalRedisCluster();
    try {
      await cluster.boot(size);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  private async boot(size: number): Promise<void> {
    process.once('exit', this.onExit);
    const taken = new Set<number>();
    for (let i = 0; i < size; i++) {
      const port = await freeClusterPort(taken);
      taken.add(port);
      this.ports.push(port);
      let stderr = '';
      const child = spawn('redis-server', [
        '--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes',
        '--cluster-config-file', join(this.dir, `nodes-${port}.conf`), '--cluster-node-timeout', '5000',
        '--dir', this.dir, '--save', '', '--appendonly', 'no',
      ], { stdio: ['ignore', 'ignore', 'pipe'] });
      child.stderr?.on('data', (d) => (stderr += String(d)));
      child.once('exit', (code) => {
        if (code && code !== 0) console.error(`redis-server ${port} exited with ${code}: ${stderr}`);
      });
      this.children.push(child);
    }
    await Promise.all(this.ports.map((p) => this.waitForPing(p)));
    await run('redis-cli', ['--cluster', 'create', ...this.ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 });
    await this.waitForState();
  }

  private async waitForPing(port: number): Promise<void> {
    const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    // Refused connections are expected until the server listens; connect() reports them.
    probe.on('error', () => {});
    try {
      for (let i = 0; i < 100; i++) {
        try {
          if (probe.status !== 'ready') await probe.connect();
          await probe.ping();
          return;
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      throw new Error(`redis-server on ${port} did not start`);
    } finally {
      probe.disconnect();
    }
  }

  /** Every node says cluster_state:ok and knows every slot, so clients see one settled layout. */
  private async waitForState(): Promise<void> {
    const probes = this.ports.map((port) => new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 }));
    try {
      for (let i = 0; i < 200; i++) {
        const infos = await Promise.all(probes.map((p) => p.cluster('INFO') as Promise<string>));
        if (infos.every((info) => /cluster_state:ok/.test(info) && /cluster_slots_ok:16384/.test(info) && new RegExp(`cluster_known_nodes:${this.ports.length}`).test(info))) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('the Redis Cluster did not reach cluster_state:ok');
    } finally {
      for (const p of probes) p.disconnect();
    }
  }

  /** Pub/sub connections with this name (CLIENT SETNAME), on whichever node each is. */
  async clientsNamed(name: string): Promise<{ port: number; id: string }[]> {
    const found: { port: number; id: string }[] = [];
    for (const port of this.ports) {
      const probe = new Redis({ port, host: '127.0.0.1' });
      try {
        const list = (await probe.call('CLIENT', 'LIST', 'TYPE', 'pubsub')) as string;
        for (const line of list.split('\n').filter((l) => l.includes(` name=${name} `))) found.push({ port, id: /\bid=(\d+)/.exec(line)![1] });
      } finally {
        probe.disconnect();
      }
    }
    return found;
  }

  /** CLIENT KILL ID on one node: the connection drops as if the network had cut it. */
  async killClient(port: number, id: string): Promise<void> {
    const probe = new Redis({ port, host: '127.0.0.1' });
    try {
      if ((await probe.call('CLIENT', 'KILL', 'ID', id)) !== 1) throw new Error(`no client ${id} on ${port}`);
    } finally {
      probe.disconnect();
    }
  }

  /** Which node (by port) serves a key. */
  async portOf(key: string): Promise<number> {
    const probe = new Redis({ port: this.ports[0], host: '127.0.0.1' });
    try {
      const slot = Number(await probe.cluster('KEYSLOT', key));
      const ranges = (await probe.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
      const owner = ranges.find(([from, to]) => slot >= from && slot <= to);
      if (!owner) throw new Error(`no node serves slot ${slot}`);
      return owner[2][1];
    } finally {
      probe.disconnect();
    }
  }

  /** Keys on one node matching a pattern (SCAN on that node alone). */
  async keysOn(port: number, pattern: string): Promise<string[]> {
    const probe = new Redis({ port, host: '127.0.0.1' });
    const keys: string[] = [];
    try {
      let cursor = '0';
      do {
        const [next, found] = await probe.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        keys.push(...found);
      } while (cursor !== '0');
      return keys;
    } finally {
      probe.disconnect();
    }
  }

  async stop(): Promise<void> {
    process.removeListener('exit', this.onExit);
    await Promise.all(this.children.map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    })));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
