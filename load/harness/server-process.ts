import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A child process serving HTTP on the loopback: the API (`src/main.ts`) or the bare ceiling server. */
export interface ServerProcess {
  origin: string;
  pid: number;
  /** Resident memory of the process and all its descendants (cluster workers), in MB. */
  rssMb(): number;
  /** CPU time (user + system) the process and its descendants have used so far, in ms. */
  cpuMs(): number;
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
 * Starts `node --import tsx <entry>` (no tsx wrapper process, so the pid is the server's own and
 * RSS means the server) and waits until `readyPath` answers 200.
 */
export async function startServerProcess(o: { entry: string; env: Record<string, string>; host: string; readyPath: string; nodeArgs?: string[]; timeoutMs?: number }): Promise<ServerProcess> {
  const port = await freePort(o.host);
  const child: ChildProcess = spawn(process.execPath, [...(o.nodeArgs ?? []), '--import', 'tsx', o.entry], {
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

/** Samples a server's RSS while a scenario runs: the peak is the "during" figure. */
export class RssSampler {
  private peak = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly server: ServerProcess) {}

  start(everyMs = 500): void {
    this.peak = Math.max(this.peak, this.server.rssMb());
    this.timer = setInterval(() => (this.peak = Math.max(this.peak, this.server.rssMb())), everyMs);
    this.timer.unref();
  }

  stop(): number {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.peak = Math.max(this.peak, this.server.rssMb());
    return this.peak;
  }
}
