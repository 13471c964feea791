import { Cluster, Redis, type RedisOptions } from 'ioredis';

/** One Redis server, a Sentinel-watched primary, or a Cluster: the stores use each alike. */
export type RedisConnection = Redis | Cluster;

export interface RedisSettings {
  /** One server: redis:// or rediss://, credentials in the URL. */
  url: string;
  /** host:port of each Sentinel; with sentinelName, instead of url. */
  sentinels: string[];
  sentinelName: string;
  /** host:port of some Cluster nodes (the rest are discovered); instead of url. */
  clusterNodes: string[];
  username: string;
  password: string;
  sentinelPassword: string;
  tls: boolean;
}

const hostPort = (s: string) => {
  const at = s.lastIndexOf(':');
  return { host: s.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(s.slice(at + 1)) };
};

/**
 * Logins must answer "try again later" quickly while Redis is away rather than hang: one
 * reconnect try and 2 s per command, then the command fails (and the login with it, closed).
 */
const FAIL_FAST: RedisOptions = { maxRetriesPerRequest: 1, commandTimeout: 2000, connectTimeout: 2000 };

export function configuredRedis(s: RedisSettings): boolean {
  return Boolean(s.url || s.sentinels.length || s.clusterNodes.length);
}

export function connectRedis(s: RedisSettings): RedisConnection {
  const auth: RedisOptions = {
    ...(s.username ? { username: s.username } : {}),
    ...(s.password ? { password: s.password } : {}),
    ...(s.tls ? { tls: {} } : {}),
  };
  if (s.clusterNodes.length) {
    // Every script touches one key, and so one hash slot: nothing needs keys kept together.
    return new Cluster(s.clusterNodes.map(hostPort), { redisOptions: { ...FAIL_FAST, ...auth }, enableOfflineQueue: true });
  }
  if (s.sentinels.length) {
    return new Redis({
      ...FAIL_FAST,
      ...auth,
      sentinels: s.sentinels.map(hostPort),
      name: s.sentinelName,
      ...(s.sentinelPassword ? { sentinelPassword: s.sentinelPassword } : {}),
      ...(s.tls ? { enableTLSForSentinelMode: true } : {}),
    });
  }
  return new Redis(s.url, FAIL_FAST);
}

/**
 * What in Redis's own settings would let an attacker's failures be forgotten: no append-only
 * file (a restart empties every window) or an eviction policy (memory pressure drops them).
 * Returns one warning per risk; none when INFO is not allowed (managed services).
 */
export async function persistenceRisks(redis: RedisConnection): Promise<string[]> {
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
  const risks = new Set<string>();
  for (const node of nodes) {
    let info: string;
    try {
      info = `${await node.info('persistence')}\n${await node.info('memory')}`;
    } catch {
      continue;
    }
    const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
    if (field('aof_enabled') === '0')
      risks.add('Redis keeps no append-only file: a Redis restart forgets every failed login counted so far (set appendonly yes)');
    const policy = field('maxmemory_policy');
    if (policy && policy !== 'noeviction')
      risks.add(`Redis evicts keys under memory pressure (maxmemory-policy ${policy}): counted failures can be dropped (set maxmemory-policy noeviction)`);
  }
  return [...risks];
}
