import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { RedisCredentialEvents } from '../../src/stores/credential-events.js';
import { persistenceRisks } from '../../src/stores/redis-client.js';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { RawClient } from '../helpers/raw-client.js';
import { startRedis } from '../helpers/redis-server.js';
import { startRedisCluster, startRedisSentinel, type RedisCluster, type RedisSentinel } from '../helpers/redis-topologies.js';

// postern on the two ways Redis is run for availability, each a set of real redis-server
// processes: a Cluster of three primaries, and a primary with a replica under a Sentinel.

const PW = 'Account-pass-1';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function imapLogin(gw: Gateway, user: string, pass: string): Promise<string> {
  const c = await RawClient.open(gw.ports.imap);
  try {
    await c.until(/^\* OK/);
    c.write(`a LOGIN ${user} "${pass}"\r\n`);
    return (await c.until(/^a /, 15_000)).split('\r\n').at(-1)!;
  } finally {
    c.close();
  }
}

const tally = (answers: string[]) => ({
  failed: answers.filter((a) => a.startsWith('a NO [AUTHENTICATIONFAILED]')).length,
  limited: answers.filter((a) => a.startsWith('a NO [LIMIT]')).length,
});

describe('on a Redis Cluster', () => {
  let cluster: RedisCluster;
  let gw: Gateway;
  beforeAll(async () => {
    cluster = await startRedisCluster();
    // One node named: the client finds the other two from it.
    gw = await startGateway({ env: { POSTERN_REDIS__CLUSTER_NODES: JSON.stringify([cluster.nodes[0]]) } });
    await gw.addUser('alice', PW);
    await gw.addUser('bob', PW);
  }, 60_000);
  afterAll(async () => {
    await gw?.stop();
    await cluster?.stop();
  });

  it('logs in and checks only 5 of 20 parallel guesses at one account', async () => {
    expect(await imapLogin(gw, 'alice', PW)).toMatch(/^a OK/);
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => imapLogin(gw, 'bob', `Wrong-${i}-pw`)));
    expect(tally(answers)).toEqual({ failed: 5, limited: 15 });
  });

  it('carries a credential change to every process listening on the cluster', async () => {
    const other = new Cluster([{ host: '127.0.0.1', port: Number(cluster.nodes[1]!.split(':')[1]) }]);
    other.on('error', () => {});
    const feed = new RedisCredentialEvents(other);
    const heard: string[] = [];
    const unsubscribe = feed.subscribe((userId) => heard.push(userId));
    try {
      await sleep(500);
      const alice = await gw.app.store.users.findByName('alice');
      await gw.app.events.changed(alice!.id);
      await expect.poll(() => heard, { timeout: 5000 }).toContain(alice!.id);
    } finally {
      unsubscribe();
      await feed.close();
      other.disconnect();
    }
  });
});

describe('on a primary watched by Sentinel', () => {
  let sentinel: RedisSentinel;
  let gw: Gateway;
  beforeAll(async () => {
    sentinel = await startRedisSentinel();
    gw = await startGateway({
      env: { POSTERN_REDIS__SENTINELS: JSON.stringify([sentinel.sentinel]), POSTERN_REDIS__SENTINEL_NAME: `"${sentinel.name}"` },
    });
    await gw.addUser('alice', PW);
    await gw.addUser('bob', PW);
  }, 60_000);
  afterAll(async () => {
    await gw?.stop();
    await sentinel?.stop();
  });

  it('follows a failover to the promoted replica, with the failures counted before it', async () => {
    expect(await imapLogin(gw, 'alice', PW)).toMatch(/^a OK/);
    for (let i = 0; i < 3; i++) expect(await imapLogin(gw, 'bob', `Wrong-${i}-pw`)).toMatch(/^a NO \[AUTHENTICATIONFAILED\]/);
    await sleep(300); // replication is asynchronous: let the replica have the last writes
    const old = await sentinel.killPrimary();
    // Logins answer "try again later" until the Sentinel has promoted the replica.
    let answer = '';
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      answer = await imapLogin(gw, 'alice', PW);
      if (answer.startsWith('a OK')) break;
      expect(answer).toMatch(/^a NO \[UNAVAILABLE\]/);
      await sleep(250);
    }
    expect(answer).toMatch(/^a OK/);
    expect(await sentinel.primaryPort()).not.toBe(old);
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => imapLogin(gw, 'bob', `Wrong-${i + 3}-pw`)));
    expect(tally(answers)).toEqual({ failed: 2, limited: 8 });
  }, 60_000);
});

describe('Redis settings that would forget counted failures', () => {
  it('are named at start: no append-only file, an eviction policy', async () => {
    const bare = await startRedis();
    const evicting = await startRedis({ persist: true, extraArgs: ['--maxmemory', '100mb', '--maxmemory-policy', 'allkeys-lru'] });
    const safe = await startRedis({ persist: true });
    try {
      expect(await persistenceRisks(bare.client())).toEqual([expect.stringContaining('appendonly yes')]);
      expect(await persistenceRisks(evicting.client())).toEqual([expect.stringContaining('maxmemory-policy noeviction')]);
      expect(await persistenceRisks(safe.client())).toEqual([]);
    } finally {
      await Promise.all([bare.stop(), evicting.stop(), safe.stop()]);
    }
  });

  it('take one way to reach Redis, and a Sentinel setup names its primary', () => {
    const load = (env: Record<string, string>) => () => loadConfig({ env });
    expect(
      load({ POSTERN_REDIS__URL: 'redis://127.0.0.1:6379', POSTERN_REDIS__SENTINELS: '["127.0.0.1:26379"]', POSTERN_REDIS__SENTINEL_NAME: '"m"' }),
    ).toThrow(/redis: set one of url, sentinels or cluster_nodes/);
    expect(load({ POSTERN_REDIS__SENTINELS: '["127.0.0.1:26379"]' })).toThrow(/sentinel_name is needed/);
    expect(load({ POSTERN_REDIS__CLUSTER_NODES: '["no-port"]' })).toThrow(/redis.cluster_nodes.0: expected host:port/);
  });
});
