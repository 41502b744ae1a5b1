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

/** REDIS_CLUSTER_NODES ("host:port,host:port") as ioredis wants them. */
function seedNodes(clusterNodes: string): { host: string; port: number }[] {
  return clusterNodes.split(',').map((hp) => {
    const [host, port] = hp.trim().split(':');
    return { host, port: Number(port) };
  });
}

/** One connection (or cluster client) per purpose; options tuned for a hot path of small scripts. */
export function createRedis(url: string, clusterNodes: string | undefined, name: string, onError?: (err: Error, name: string) => void): RedisClient {
  if (clusterNodes) {
    return reportErrors(new Cluster(seedNodes(clusterNodes), { enableAutoPipelining: true, redisOptions: { connectionName: name, maxRetriesPerRequest: 2 } }), name, onError);
  }
  return reportErrors(new Redis(url, { enableAutoPipelining: true, maxRetriesPerRequest: 2, connectionName: name }), name, onError);
}

/**
 * A connection for SUBSCRIBE/PSUBSCRIBE, whose `close` and `ready` tell its owner when messages
 * may have been lost and when its subscriptions are back.
 *
 * On a cluster it is a plain connection to one node, not a cluster client: classic pub/sub reaches
 * every node of a cluster, and ioredis' cluster client moves its subscriber connection to another
 * node without any event (node-redis#2725 asks the same of node-redis), so messages lost in the
 * move went unnoticed. Each reconnect tries the next seed node, so a node that is gone for good
 * (failed over) is left behind; the first is picked at random to spread instances over the nodes.
 */
export function createSubscriber(url: string, clusterNodes: string | undefined, name: string, onError?: (err: Error, name: string) => void): Redis {
  if (!clusterNodes) return reportErrors(new Redis(url, { maxRetriesPerRequest: 2, connectionName: name }), name, onError) as Redis;
  const nodes = seedNodes(clusterNodes);
  let at = Math.floor(Math.random() * nodes.length);
  const client: Redis = new Redis({
    ...nodes[at],
    connectionName: name,
    maxRetriesPerRequest: 2,
    retryStrategy: (times) => {
      at = (at + 1) % nodes.length;
      // ioredis' connector reads host and port from these options at each connect.
      Object.assign(client.options, nodes[at]);
      return Math.min(times * 50, 2000);
    },
  });
  return reportErrors(client, name, onError) as Redis;
}
