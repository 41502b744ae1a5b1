import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { preparedIsolation, REDIS_URL } from './support/harness.js';
import { freePort } from './support/processes.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SHUTDOWN_TIMEOUT_MS = 3000;
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** Every process below `pid` (children, grandchildren…), from ps. */
function descendants(pid: number): number[] {
  const out = execFileSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' });
  const children = new Map<number, number[]>();
  for (const line of out.trim().split('\n')) {
    const [p, pp] = line.trim().split(/\s+/).map(Number);
    children.set(pp, [...(children.get(pp) ?? []), p]);
  }
  const found: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      found.push(c);
      walk(c);
    }
  };
  walk(pid);
  return found;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * `npm start` (README's first command) must leave no server behind when npm is told to stop, as
 * a process manager or a terminal does: `start` is `exec node …` (the build is `prestart`), so
 * the shell npm runs it in becomes node, npm's SIGTERM reaches the server, which drains and exits
 * (Debian's sh, dash, does not forward it to a child: a `node …` under it was left running). The build step is
 * skipped here (`--ignore-scripts` skips pre-scripts only): the suite's global setup built dist/,
 * which is run from a copy (with the project's package.json and node_modules), so another test
 * run's build cannot take it away meanwhile.
 */
function projectCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), 'npm-start-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  for (let attempt = 0; ; attempt++) {
    try {
      if (!existsSync(join(ROOT, 'dist/main.js'))) throw new Error('dist/main.js is missing (npm run build)');
      cpSync(join(ROOT, 'dist'), join(dir, 'dist'), { recursive: true });
      break;
    } catch (err) {
      if (attempt >= 60) throw err;
      execFileSync('sleep', ['1']);
    }
  }
  cpSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

describe('npm start', () => {
  it('runs the server as npm\'s own child, and a SIGTERM to npm stops it within the shutdown timeout', async () => {
    const cwd = projectCopy();
    const iso = await preparedIsolation('npm-start', cleanups);
    const port = await freePort();
    const npm = spawn('npm', ['start', '--ignore-scripts'], {
      cwd,
      env: {
        ...process.env, NODE_ENV: 'test', WORKERS: '1', PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: iso.databaseUrl, REDIS_URL,
        REDIS_PREFIX: iso.redisPrefix, LOG_LEVEL: 'warn', SEED_SAMPLE_SALE: 'false', SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    npm.stdout!.on('data', (c: Buffer) => (log = (log + c.toString()).slice(-4000)));
    npm.stderr!.on('data', (c: Buffer) => (log = (log + c.toString()).slice(-4000)));
    const npmExited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
    const seen = new Set<number>([npm.pid!]);
    cleanups.push(async () => {
      for (const pid of seen) if (alive(pid)) process.kill(pid, 'SIGKILL');
    });

    const deadline = Date.now() + 25_000;
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`npm start did not answer /health within 25 s:\n${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    // The server is node running dist/main.js, directly below npm (no shell between them).
    const tree = descendants(npm.pid!);
    for (const pid of tree) seen.add(pid);
    const commands = tree.map((pid) => execFileSync('ps', ['-o', 'args=', '-p', String(pid)], { encoding: 'utf8' }).trim());
    expect(commands, 'npm runs node itself, with no shell between them to swallow the signal').toEqual([
      expect.stringMatching(/^(\S*\/)?node --enable-source-maps .*dist\/main\.js$/),
    ]);

    const stopped = Date.now();
    npm.kill('SIGTERM');
    await npmExited;
    const until = stopped + SHUTDOWN_TIMEOUT_MS + 5000;
    while (tree.some(alive) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(tree.filter(alive), `still running ${Date.now() - stopped} ms after SIGTERM to npm:\n${log}`).toEqual([]);
    expect(await fetch(`http://127.0.0.1:${port}/health`).then(() => 'answered', () => 'refused')).toBe('refused');
  });
});
