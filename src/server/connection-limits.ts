import type { Server } from 'node:http';
import { isIPv6 } from 'node:net';
import type { Socket } from 'node:net';
import { Counter, type Registry } from 'prom-client';

/**
 * At most `max` open TCP connections per client address (HTTP keep-alive, SSE and WebSocket
 * alike: a WebSocket is the connection its upgrade came on); the next one is closed as soon as it
 * is accepted, before a byte of it is read. 0: no limit. The loopback counts like any address.
 *
 * The address is the socket's: behind a proxy every connection comes from the proxy, so the limit
 * belongs there (see `HTTP_MAX_CONNECTIONS_PER_ADDRESS` in the configuration). IPv6 addresses
 * count by their /64, which one host can rotate through at will.
 */
export function limitConnectionsPerAddress(server: Server, max: number, registry?: Registry): void {
  if (max <= 0) return;
  const refused = registry
    ? new Counter({ name: 'flashsale_connections_refused_total', help: 'TCP connections closed on arrival because their address already had HTTP_MAX_CONNECTIONS_PER_ADDRESS open', registers: [registry] })
    : null;
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const key = addressKey(socket.remoteAddress);
    if (key === null) return;
    const count = open.get(key) ?? 0;
    if (count >= max) {
      refused?.inc();
      socket.destroy();
      return;
    }
    open.set(key, count + 1);
    socket.once('close', () => {
      const left = (open.get(key) ?? 1) - 1;
      if (left > 0) open.set(key, left);
      else open.delete(key);
    });
  });
}

/** The address a connection counts against: IPv4 as it is (IPv4-mapped IPv6 too), IPv6 by its /64. */
export function addressKey(address: string | undefined): string | null {
  if (!address) return null;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  if (!isIPv6(address)) return address;
  const [head, tail = ''] = address.split('%')[0].split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}
