import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * How production runs the API (`npm start`, the Dockerfile): the compiled `dist/main.js` (`npm run
 * build`) with plain node, no TypeScript loader (tsx held ~55 MB more RSS). A 32 MB young
 * generation, and the old generation may grow to twice what the last full GC kept (bench/NOTES.md).
 */
export const API_COMMAND = {
  nodeArgs: ['--enable-source-maps', '--max-semi-space-size=32', '--heap-growing-percent=100'],
  entry: 'dist/main.js',
} as const;

/** A child process serving HTTP on the loopback: the API (`dist/main.js`) or the bare ceiling server. */
export interface ServerProcess {
  origin: string;
  pid: number;
  /** Resident memory of the process and all its descendants (cluster workers), in MB. */
  rssMb(): number;
  /** CPU time (user + system) the process and its descendants have used so far, in ms. */
  cpuMs(): number;
  /** Connections the kernel has completed on its port that it has not accepted yet. */
  acceptQueue(): number;
  /** The last lines it wrote to stderr, for error messages. */
  tail(): string;
  stop(): Promise<number | null>;
}

export async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts `node <nodeArgs> <entry>` (no wrapper process, so the pid is the server's own and RSS
 * means the server) and waits until `readyPath` answers 200.
 */
export async function startServerProcess(o: { entry: string; env: Record<string, string>; host: string; readyPath: string; nodeArgs?: string[]; timeoutMs?: number }): Promise<ServerProcess> {
  const port = await freePort(o.host);
  const child: ChildProcess = spawn(process.execPath, [...(o.nodeArgs ?? []), o.entry], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...o.env, PORT: String(port), HOST: o.host },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const keep = (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-4000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve((exitCode = code))));

  const origin = `http://${o.host}:${port}`;
  const deadline = Date.now() + (o.timeoutMs ?? 60_000);
  for (;;) {
    if (exitCode !== undefined) throw new Error(`${o.entry} exited with ${exitCode} before it was ready:\n${log}`);
    try {
      const res = await fetch(`${origin}${o.readyPath}`);
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${o.entry} was not ready within ${o.timeoutMs ?? 60_000} ms:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  const pid = child.pid!;
  return {
    origin,
    pid,
    rssMb: () => treeRssMb(pid),
    cpuMs: () => treeCpuMs(pid),
    acceptQueue: () => acceptQueueLength(port),
    tail: () => log,
    stop: async () => {
      if (exitCode !== undefined) return exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** The process and its descendants (cluster workers), from /proc (Linux); empty elsewhere. */
function processTree(rootPid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return [];
  }
  const children = new Map<number, number[]>();
  for (const e of entries) {
    const fields = statFields(Number(e));
    if (!fields) continue;
    const ppid = Number(fields[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(e));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const visit = (pid: number) => {
    out.push(pid);
    for (const c of children.get(pid) ?? []) visit(c);
  };
  visit(rootPid);
  return out;
}

/** /proc/<pid>/stat fields after the command name (which may hold spaces and parentheses): [state, ppid, …]. */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null; // the process ended while we looked
  }
}

/** Sums VmRSS over a process and its descendants, in MB. */
export function treeRssMb(rootPid: number): number {
  let kb = 0;
  for (const pid of processTree(rootPid)) {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) kb += Number(m[1]);
    } catch {
      // ended
    }
  }
  return Math.round(kb / 1024);
}

/** Linux reports CPU time in clock ticks of 1/100 s on every common build. */
const TICK_MS = 10;

/** Sums user + system CPU time over a process and its descendants, in ms. */
export function treeCpuMs(rootPid: number): number {
  let ticks = 0;
  for (const pid of processTree(rootPid)) {
    const f = statFields(pid);
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the command name.
    if (f) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks * TICK_MS;
}

/**
 * Connections waiting in the accept queue of the socket listening on `port` (Linux: a listening
 * socket's rx_queue in /proc/net/tcp*; 0 elsewhere). They are established, so their clients have
 * sent requests that the server has not seen yet: Node accepts one connection per event-loop turn.
 */
export function acceptQueueLength(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let queued = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue …; st 0A is LISTEN.
      const [, local, , state, queues] = line.trim().split(/\s+/);
      if (state === '0A' && local?.endsWith(`:${hexPort}`)) queued += parseInt(queues.split(':')[1], 16);
    }
  }
  return queued;
}

/**
 * Samples a server while a scenario runs: its RSS (the peak is the "during" figure) and its accept
 * queue (a queue that stays long means clients wait before the server has seen their request).
 */
export class ServerWatch {
  private rssPeak = 0;
  private queuePeak = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly server: ServerProcess) {}

  start(everyMs = 500): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
  }

  stop(): { rssPeakMb: number; acceptQueuePeak: number } {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.sample();
    return { rssPeakMb: this.rssPeak, acceptQueuePeak: this.queuePeak };
  }

  private sample(): void {
    this.rssPeak = Math.max(this.rssPeak, this.server.rssMb());
    this.queuePeak = Math.max(this.queuePeak, this.server.acceptQueue());
  }
}
