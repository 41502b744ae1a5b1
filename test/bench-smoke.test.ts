import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { parseBenchOptions } from '../load/harness/bench-options.js';
import { benchIsolation, REDIS_URL as BENCH_REDIS_URL } from '../load/harness/bench-isolation.js';
import { GraphqlClient } from '../load/harness/graphql-client.js';
import { runBareCeiling } from '../load/harness/scenarios/bare-ceiling.js';
import { webSocketFrom } from '../load/harness/scenarios/subscribers.js';
import { runBench } from '../load/harness/run-bench.js';
import { createProgress } from '../load/harness/progress.js';
import { acceptQueueLength } from '../load/harness/server-process.js';
import { deleteRedisPrefix } from './support/harness.js';

// The CI-sized bench: a few seconds of every API scenario against a server the harness starts on
// its own database and Redis prefix. It checks correctness only; speed is for `npm run bench`.
describe('bench smoke', () => {
  it('runs the load scenarios at tiny sizes and every audit passes', async () => {
    const opts = parseBenchOptions(['--smoke', '--out-dir='], {});
    const report = await runBench(opts, createProgress(false));

    const audited = report.scenarios.filter((s) => s.audit);
    expect(audited.map((s) => s.name).sort()).toEqual(['flow', 'storm-closed', 'storm-open']);
    for (const s of audited) {
      expect(s.audit!.checks.filter((c) => !c.passed), s.name).toEqual([]);
      expect(s.audit!.unitsSold, s.name).toBe(opts.stock);
    }
    for (const s of report.scenarios.filter((x) => !x.skipped)) {
      // Every request was answered: no transport errors, no 5xx, nothing left in flight.
      expect(Object.keys(s.codes).filter((c) => c.startsWith('TRANSPORT_') || c.startsWith('HTTP_5')), s.name).toEqual([]);
      expect(s.timedOut, s.name).toBe(false);
    }
    expect(report.scenarios.find((s) => s.name === 'reads')?.codes.OK).toBeGreaterThan(0);
    expect(report.correct).toBe(true);
  }, 180_000);
});

describe('the bare ceiling', () => {
  it('runs the storm\'s closed and open loops against a bare server and sells its stock once', async () => {
    const opts = parseBenchOptions(['--smoke', '--attempts=400', '--open-attempts=400', '--arrival-rate=400', '--stock=50'], {});
    const prefix = benchIsolation().ceilingPrefix;
    try {
      for (const [mode, name] of [['closed', 'ceiling'], ['open', 'ceiling-open']] as const) {
        const r = await runBareCeiling(opts, { redisUrl: BENCH_REDIS_URL, prefix, progress: createProgress(false) }, mode);
        expect(r.name).toBe(name);
        expect(r.error, name).toBeUndefined();
        expect(r.latency.count + r.dropped, name).toBe(400);
        expect(r.codes.OK, name).toBe(50);
        expect(Object.keys(r.codes).filter((c) => c !== 'OK' && c !== 'SOLD_OUT' && c !== 'LIMIT_EXCEEDED'), name).toEqual([]);
      }
    } finally {
      await deleteRedisPrefix(prefix);
    }
  }, 60_000);
});

describe('the accept-queue gauge of the bench', () => {
  it('counts connections the kernel established that a busy server has not accepted yet', async () => {
    // A listener whose event loop is blocked cannot accept: connections wait in the kernel's queue.
    const child = spawn(process.execPath, ['-e', `
      const server = require('node:net').createServer();
      server.listen(0, '127.0.0.1', () => {
        process.stdout.write(String(server.address().port) + '\\n');
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5000);
      });`], { stdio: ['ignore', 'pipe', 'inherit'] });
    const sockets: Socket[] = [];
    try {
      const port = Number(await new Promise<string>((resolve) => child.stdout!.once('data', (d) => resolve(String(d).trim()))));
      expect(acceptQueueLength(port)).toBe(0);
      for (let i = 0; i < 5; i++) {
        const socket = connect(port, '127.0.0.1');
        sockets.push(socket);
        await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      }
      expect(acceptQueueLength(port)).toBe(5);
    } finally {
      for (const s of sockets) s.destroy();
      child.kill('SIGKILL');
    }
  });
});

describe('the load generator as a browser or as an app', () => {
  it('sends Origin on HTTP requests and WebSocket upgrades only when --origin is given', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const server = createServer((req, res) => {
      seen.push(req.headers);
      res.setHeader('content-type', 'application/json');
      res.end('{"data":{}}');
    });
    const wss = new WebSocketServer({ server });
    wss.on('connection', (socket, req) => {
      seen.push(req.headers);
      socket.close();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      for (const origin of [parseBenchOptions(['--origin=http://shop.localhost:5173'], {}).origin, parseBenchOptions([], {}).origin]) {
        seen.length = 0;
        const client = new GraphqlClient(url, 1, origin);
        await client.post('{}');
        await client.close();
        const Socket = webSocketFrom(origin);
        const ws = new Socket(url.replace('http', 'ws'));
        await once(ws, 'close');
        expect(seen.map((h) => h.origin), origin || 'no origin').toEqual(origin ? [origin, origin] : [undefined, undefined]);
      }
    } finally {
      wss.close();
      server.close();
    }
  });
});
