import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, waitFor } from './ports.js';

export interface RedisServer {
  url: string;
  port: number;
  client(): Redis;
  /** SIGKILL: no goodbye to clients, nothing flushed beyond what persistence wrote already. */
  kill(): Promise<void>;
  /** Starts it again on the same port and directory (so with `persist`, with its data). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function reachable(url: string): Promise<void> {
  await waitFor('redis-server', async () => {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => {});
    try {
      await r.connect();
      await r.ping();
    } finally {
      r.disconnect();
    }
  });
}

/**
 * Debian's redis-server on a free port with a private directory. No persistence unless
 * `persist`: then every write is in the append-only file before Redis answers it, as a
 * deployment that must not forget guessing counts runs it.
 */
export async function startRedis(opts: { persist?: boolean; extraArgs?: string[] } = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'postern-redis-'));
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--dir',
    dir,
    ...(opts.persist ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
    ...(opts.extraArgs ?? []),
  ];
  let proc: ChildProcess;
  const launch = async () => {
    proc = spawn('redis-server', args, { stdio: 'ignore' });
    await reachable(url);
  };
  const url = `redis://127.0.0.1:${port}`;
  const clients: Redis[] = [];
  const kill = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGKILL');
      await exited;
    }
  };
  await launch();
  return {
    url,
    port,
    client() {
      const c = new Redis(url, { maxRetriesPerRequest: 1, commandTimeout: 2000 });
      c.on('error', () => {});
      clients.push(c);
      return c;
    },
    kill,
    restart: launch,
    async stop() {
      for (const c of clients) c.disconnect();
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
