import { once } from 'node:events';
import { connect } from 'node:net';

export interface MonitoredCommand {
  /** Who sent it: `lua` for a script's own calls, else the client's address. */
  source: string;
  args: string[];
}

/**
 * The commands Redis ran while `during` ran, read with MONITOR over a plain socket. ioredis'
 * monitor mode can take a monitor line for a command's reply when the server is busy ("Command
 * queue state error", redis/ioredis#1981), which a shared test Redis always is.
 */
export async function monitorRedis(redisUrl: string, during: () => Promise<void>, settleMs = 100): Promise<MonitoredCommand[]> {
  const url = new URL(redisUrl);
  const socket = connect(Number(url.port || 6379), url.hostname);
  await once(socket, 'connect');
  const lines: string[] = [];
  let pending = '';
  let confirmed!: () => void;
  const started = new Promise<void>((resolve) => (confirmed = resolve));
  socket.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    for (let end = pending.indexOf('\r\n'); end >= 0; end = pending.indexOf('\r\n')) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 2);
      if (line === '+OK') confirmed();
      else lines.push(line);
    }
  });
  socket.write('MONITOR\r\n');
  try {
    await started;
    await during();
    await new Promise((r) => setTimeout(r, settleMs));
  } finally {
    socket.destroy();
  }
  return lines.map(parseMonitorLine).filter((c): c is MonitoredCommand => c !== null);
}

/** `+<time> [<db> <source>] "cmd" "arg" …`, each argument quoted with C-style escapes. */
function parseMonitorLine(line: string): MonitoredCommand | null {
  const m = /^\+[\d.]+ \[\d+ ([^\]]+)\] (.*)$/.exec(line);
  if (!m) return null;
  const args = [...m[2].matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((a) =>
    a[1].replace(/\\(x[0-9a-fA-F]{2}|.)/g, (_, e: string) => (e.length === 3 ? String.fromCharCode(parseInt(e.slice(1), 16)) : ({ n: '\n', r: '\r', t: '\t', a: '\x07', b: '\b' } as Record<string, string>)[e] ?? e)),
  );
  return { source: m[1], args };
}
