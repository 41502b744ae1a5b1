import { Redis, Cluster } from 'ioredis';

export type RedisClient = Redis | Cluster;

/** One connection (or cluster client) per purpose; options tuned for a hot path of small scripts. */
export function createRedis(url: string, clusterNodes: string | undefined, name: string): RedisClient {
  const common = {
    enableAutoPipelining: true,
    maxRetriesPerRequest: 2,
    connectionName: name,
  };
  if (clusterNodes) {
    const nodes = clusterNodes.split(',').map((hp) => {
      const [host, port] = hp.trim().split(':');
      return { host, port: Number(port) };
    });
    return new Cluster(nodes, { enableAutoPipelining: true, redisOptions: { connectionName: name, maxRetriesPerRequest: 2 } });
  }
  return new Redis(url, common);
}
