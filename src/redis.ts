import { Redis, Cluster, type RedisOptions } from 'ioredis';

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

/**
 * Where Redis is: REDIS_URL, or a cluster (REDIS_CLUSTER_NODES), or a primary found through Redis
 * Sentinel (REDIS_SENTINELS + REDIS_SENTINEL_NAME; REDIS_URL then gives only user, password, db).
 */
export interface RedisTarget {
  url: string;
  clusterNodes?: string;
  sentinels?: string;
  sentinelName?: string;
}

export function redisTarget(config: { REDIS_URL: string; REDIS_CLUSTER_NODES?: string; REDIS_SENTINELS?: string; REDIS_SENTINEL_NAME?: string }): RedisTarget {
  return { url: config.REDIS_URL, clusterNodes: config.REDIS_CLUSTER_NODES, sentinels: config.REDIS_SENTINELS, sentinelName: config.REDIS_SENTINEL_NAME };
}

/**
 * A plain connection to REDIS_URL, or to the primary the sentinels name. ioredis asks the
 * sentinels again at every reconnect, so after a failover each connection lands on the promoted
 * replica. A connection still open to an old primary that came back as a replica gets READONLY
 * for its first write: it reconnects (asking the sentinels) and sends the command again.
 *
 * Not ioredis' `failoverDetector`: its +switch-master handler closes the connector, and when that
 * lands while the client is reconnecting (after a crash of the primary it usually is) the connect
 * fails with "Connection is closed" and the client ends for good — found by test/sentinel.test.ts.
 */
function plainRedis(target: RedisTarget, options: RedisOptions): Redis {
  if (!target.sentinels || !target.sentinelName) return new Redis(target.url, options);
  return new Redis(target.url, {
    ...options,
    sentinels: seedNodes(target.sentinels),
    name: target.sentinelName,
    role: 'master',
    // While no sentinel answers (or they still name the dead primary), retry quickly but boundedly.
    sentinelRetryStrategy: (times) => Math.min(times * 100, 1000),
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false),
  });
}

/** One connection (or cluster client) per purpose; options tuned for a hot path of small scripts. */
export function createRedis(target: RedisTarget, name: string, onError?: (err: Error, name: string) => void): RedisClient {
  if (target.clusterNodes) {
    return reportErrors(new Cluster(seedNodes(target.clusterNodes), { enableAutoPipelining: true, redisOptions: { connectionName: name, maxRetriesPerRequest: 2 } }), name, onError);
  }
  return reportErrors(plainRedis(target, { enableAutoPipelining: true, maxRetriesPerRequest: 2, connectionName: name }), name, onError);
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
export function createSubscriber(target: RedisTarget, name: string, onError?: (err: Error, name: string) => void): Redis {
  if (!target.clusterNodes) return reportErrors(plainRedis(target, { maxRetriesPerRequest: 2, connectionName: name }), name, onError) as Redis;
  const nodes = seedNodes(target.clusterNodes);
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
