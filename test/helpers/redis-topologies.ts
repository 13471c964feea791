import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort, waitFor } from './ports.js';

const run = promisify(execFile);

interface Proc {
  port: number;
  proc: ChildProcess;
}

function redisServer(args: string[]): ChildProcess {
  return spawn('redis-server', args, { stdio: 'ignore' });
}

async function kill(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await exited;
}

async function answer(port: number, ...command: string[]): Promise<string> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => {});
  try {
    await r.connect();
    return String(await r.call(command[0]!, ...command.slice(1)));
  } finally {
    r.disconnect();
  }
}

export interface RedisCluster {
  /** "127.0.0.1:port" of each primary. */
  nodes: string[];
  stop(): Promise<void>;
}

/** Three Debian redis-server primaries joined into a Cluster by redis-cli, no replicas. */
export async function startRedisCluster(): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'postern-cluster-'));
  const procs: Proc[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      // The bus port chosen too: the default (port + 10000) may not be free, or not exist.
      const bus = await freePort();
      const args = [
        '--port',
        String(port),
        '--cluster-port',
        String(bus),
        '--bind',
        '127.0.0.1',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout',
        '2000',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
      ];
      procs.push({ port, proc: redisServer(args) });
    }
    for (const p of procs) await waitFor('redis cluster node', async () => void (await answer(p.port, 'PING')));
    const nodes = procs.map((p) => `127.0.0.1:${p.port}`);
    await run('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-yes'], { timeout: 20_000 });
    for (const p of procs) {
      await waitFor('redis cluster state ok', async () => {
        if (!(await answer(p.port, 'CLUSTER', 'INFO')).includes('cluster_state:ok')) throw new Error('cluster not ready');
      });
    }
    return {
      nodes,
      async stop() {
        await Promise.all(procs.map((p) => kill(p.proc)));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await Promise.all(procs.map((p) => kill(p.proc)));
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export interface RedisSentinel {
  /** "127.0.0.1:port" of the Sentinel. */
  sentinel: string;
  name: string;
  /** Port of whichever server is the primary now, as the Sentinel says. */
  primaryPort(): Promise<number>;
  /** SIGKILL to the current primary; the Sentinel promotes the replica. */
  killPrimary(): Promise<number>;
  stop(): Promise<void>;
}

/** A primary, its replica and one Sentinel (quorum 1) watching them, quick to fail over. */
export async function startRedisSentinel(): Promise<RedisSentinel> {
  const dir = mkdtempSync(join(tmpdir(), 'postern-sentinel-'));
  const name = 'postern-primary';
  const servers: Proc[] = [];
  let sentinel: ChildProcess | null = null;
  const stopAll = async () => {
    await Promise.all([...servers.map((s) => kill(s.proc)), ...(sentinel ? [kill(sentinel)] : [])]);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const primary = await freePort();
    const replica = await freePort();
    const base = (port: number) => [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      mkdtempSync(join(dir, 'node-')),
    ];
    servers.push({ port: primary, proc: redisServer(base(primary)) });
    servers.push({ port: replica, proc: redisServer([...base(replica), '--replicaof', '127.0.0.1', String(primary)]) });
    for (const s of servers) await waitFor('redis server', async () => void (await answer(s.port, 'PING')));
    await waitFor('replica in sync', async () => {
      if (!(await answer(replica, 'INFO', 'replication')).includes('master_link_status:up')) throw new Error('replica not linked');
    });
    const sport = await freePort();
    const conf = join(dir, 'sentinel.conf');
    writeFileSync(
      conf,
      [
        `port ${sport}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${primary} 1`,
        `sentinel down-after-milliseconds ${name} 1000`,
        `sentinel failover-timeout ${name} 5000`,
        `sentinel parallel-syncs ${name} 1`,
        '',
      ].join('\n'),
    );
    sentinel = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
    await waitFor('redis sentinel', async () => {
      if (!(await answer(sport, 'SENTINEL', 'get-master-addr-by-name', name)).includes(String(primary))) throw new Error('sentinel not watching');
    });
    const primaryPort = async () => {
      const r = new Redis({ port: sport, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      r.on('error', () => {});
      try {
        await r.connect();
        const [, port] = (await r.call('SENTINEL', 'get-master-addr-by-name', name)) as [string, string];
        return Number(port);
      } finally {
        r.disconnect();
      }
    };
    return {
      sentinel: `127.0.0.1:${sport}`,
      name,
      primaryPort,
      async killPrimary() {
        const port = await primaryPort();
        await kill(servers.find((s) => s.port === port)!.proc);
        return port;
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
