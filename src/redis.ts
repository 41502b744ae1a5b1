import { Redis, Cluster } from 'ioredis';

export type RedisClient = Redis | Cluster;

/** Connection errors, at most once per client per 10 s: ioredis retries on its own, /ready reports it. */
function reportErrors(client: RedisClient, name: string, onError?: (err: Error, name: string) => void): RedisClient {
  let last = 0;
  client.on('error', (err: Error) => {
    const now = Date.now();
    if (now - last < 10_000) return;
    last = now;
    onError?.(err, name);
  });
  return client;
}

/** One connection (or cluster client) per purpose; options tuned for a hot path of small scripts. */
export function createRedis(url: string, clusterNodes: string | undefined, name: string, onError?: (err: Error, name: string) => void): RedisClient {
  if (clusterNodes) {
    const nodes = clusterNodes.split(',').map((hp) => {
      const [host, port] = hp.trim().split(':');
      return { host, port: Number(port) };
    });
    return reportErrors(new Cluster(nodes, { enableAutoPipelining: true, redisOptions: { connectionName: name, maxRetriesPerRequest: 2 } }), name, onError);
  }
  return reportErrors(new Redis(url, { enableAutoPipelining: true, maxRetriesPerRequest: 2, connectionName: name }), name, onError);
}
