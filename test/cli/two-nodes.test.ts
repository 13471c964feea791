// Two `postern serve` processes sharing one Redis and one store, behind a real HAProxy that
// spreads clients over both with the PROXY protocol: what one process counts or learns, the
// other knows; when one dies mid-storm the clients carry on through the other.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDovecot, type Dovecot } from '../helpers/dovecot.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { RawClient } from '../helpers/raw-client.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

const BIN = resolve(__dirname, '../../bin/postern');
const PW = 'Account-pass-1';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Node {
  name: string;
  imap: number;
  proc: ChildProcess;
  out: () => string;
  exited: Promise<unknown>;
}

let dovecot: Dovecot;
let redis: RedisServer;
let haproxy: ChildProcess;
let front: number;
let env: Record<string, string>;
const nodes: Node[] = [];

async function startNode(name: string): Promise<Node> {
  const imap = await freePort();
  const proc = spawn(BIN, ['serve'], {
    env: {
      ...env,
      POSTERN_IMAP__PORT: String(imap),
      POSTERN_API__PORT: String(await freePort()),
      POSTERN_LOG__LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise((r) => proc.once('exit', r));
  await waitFor(
    `${name} listening`,
    async () => {
      if (!out.includes('postern listening')) throw new Error(out);
    },
    30_000,
  );
  return { name, imap, proc, out: () => out, exited };
}

const cli = (args: string[], input?: string) => spawnSync(BIN, args, { env, input, encoding: 'utf8', timeout: 30_000 });

/** A login through HAProxy from `from` (127.0.0.2 and up; HAProxy itself is 127.0.0.1). */
async function login(user: string, pass: string, from = '127.0.0.2'): Promise<string> {
  const c = await RawClient.open(front, false, from);
  try {
    await c.until(/^\* OK/);
    c.write(`a LOGIN ${user} "${pass}"\r\n`);
    return (await c.until(/^a /, 15_000)).split('\r\n').at(-1)!;
  } finally {
    c.close();
  }
}

const decisions = (n: Node) =>
  n
    .out()
    .split('\n')
    .filter((l) => l.includes('"auth decision"')).length;

beforeAll(async () => {
  dovecot = await startDovecot();
  redis = await startRedis({ persist: true });
  env = {
    ...(process.env as Record<string, string>),
    POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-2nodes-')),
    POSTERN_AUTH__BCRYPT_ROUNDS: '10',
    POSTERN_LOG__LEVEL: 'warn',
    POSTERN_REDIS__URL: redis.url,
    POSTERN_FRONTEND__PROXY_PROTOCOL_FROM: '["127.0.0.1/32"]',
    POSTERN_IMAP__TLS_PORT: '0',
    POSTERN_POP3__PORT: '0',
    POSTERN_POP3__TLS_PORT: '0',
    POSTERN_SUBMISSION__PORT: '0',
    POSTERN_SUBMISSION__TLS_PORT: '0',
    POSTERN_LMTP__ENABLED: 'false',
    POSTERN_UPSTREAM__IMAP_PORT: String(dovecot.imapPort),
    POSTERN_UPSTREAM__MASTER_USER: dovecot.masterUser,
    POSTERN_UPSTREAM__MASTER_PASSWORD: dovecot.masterPassword,
    POSTERN_SERVER__SHUTDOWN_GRACE: '"2s"',
  };
  for (const user of ['alice', 'bob', 'carol']) {
    expect(cli(['user', 'add', user], `${PW}\n`).status).toBe(0);
    dovecot.addUser(user, `upstream-${PW}`);
  }
  // One after the other: the first start writes the application keys both use.
  nodes.push(await startNode('node-a'));
  nodes.push(await startNode('node-b'));
  front = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'postern-haproxy-'));
  writeFileSync(
    join(dir, 'haproxy.cfg'),
    [
      'global\n  maxconn 500\n',
      'defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n  retries 3\n  option redispatch\n',
      `frontend imap\n  bind 127.0.0.1:${front}\n  default_backend postern\n`,
      'backend postern\n  balance roundrobin\n',
      ...nodes.map((n) => `  server ${n.name} 127.0.0.1:${n.imap} send-proxy-v2 check inter 300 fall 1 rise 2 source 127.0.0.1\n`),
    ].join(''),
  );
  haproxy = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: 'ignore' });
  await waitFor('haproxy', async () => {
    if (!(await login('alice', PW)).startsWith('a OK')) throw new Error('no login yet');
  });
}, 120_000);

afterAll(async () => {
  haproxy?.kill('SIGKILL');
  for (const n of nodes) n.proc.kill('SIGKILL');
  await Promise.all(nodes.map((n) => n.exited));
  await redis?.stop();
  await dovecot?.stop();
});

describe('two postern processes behind HAProxy', () => {
  it('spreads logins over both', async () => {
    const before = nodes.map(decisions);
    for (let i = 0; i < 10; i++) expect(await login('alice', PW, `127.0.0.${2 + (i % 6)}`)).toMatch(/^a OK/);
    const served = nodes.map((n, i) => decisions(n) - before[i]!);
    expect(served[0]! + served[1]!).toBe(10);
    expect(Math.min(...served)).toBeGreaterThanOrEqual(3);
  });

  it('shares the guessing limits: 5 of 20 parallel guesses checked across both', async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => login('bob', `Wrong-${i}-pw`, `127.0.0.${10 + (i % 5)}`)));
    expect(answers.filter((a) => a.startsWith('a NO [AUTHENTICATIONFAILED]'))).toHaveLength(5);
    expect(answers.filter((a) => a.startsWith('a NO [LIMIT]'))).toHaveLength(15);
  });

  it('shares what it verified: the owner gets in through either process during a lockout', async () => {
    // carol's client logs in once (on one process), then a stranger locks the account.
    expect(await login('carol', PW, '127.0.0.20')).toMatch(/^a OK/);
    await Promise.all(Array.from({ length: 8 }, (_, i) => login('carol', `Wrong-${i}-pw`, '127.0.0.21')));
    expect(await login('carol', PW, '127.0.0.21')).toMatch(/^a NO \[LIMIT\]/);
    // Round robin sends her next logins to both processes: each knows her secret was verified.
    const before = nodes.map(decisions);
    for (let i = 0; i < 4; i++) expect(await login('carol', PW, '127.0.0.20')).toMatch(/^a OK/);
    expect(nodes.map((n, i) => decisions(n) - before[i]!).every((d) => d > 0)).toBe(true);
  });

  it('ends a live session on either process when the account changes, from the command line', async () => {
    const sessions = await Promise.all(
      [2, 3, 4, 5].map(async (i) => {
        const c = await RawClient.open(front, false, `127.0.0.${30 + i}`);
        await c.until(/^\* OK/);
        c.write(`a LOGIN alice "${PW}"\r\n`);
        await c.until(/^a OK/);
        return c;
      }),
    );
    expect(cli(['user', 'disable', 'alice']).status).toBe(0);
    try {
      for (const s of sessions) expect(await s.closedWithin(8000)).toMatch(/\* BYE/);
    } finally {
      sessions.forEach((s) => s.close());
      expect(cli(['user', 'enable', 'alice']).status).toBe(0);
    }
  });

  it('carries on through the other process when one is killed mid-storm', async () => {
    let stop = false;
    const answers: Array<{ at: number; done: number; answer: string }> = [];
    const client = async (i: number) => {
      while (!stop) {
        const at = Date.now();
        const answer = await login('alice', PW, `127.0.0.${40 + i}`).catch((err: Error) => `error: ${err.message.slice(0, 60)}`);
        answers.push({ at, done: Date.now(), answer });
      }
    };
    const storm = Promise.all(Array.from({ length: 8 }, (_, i) => client(i)));
    await sleep(1500);
    const killedAt = Date.now();
    nodes[0]!.proc.kill('SIGKILL');
    await sleep(3000);
    stop = true;
    await storm;
    // Answered before the kill; the logins in flight at that moment may be cut off.
    const before = answers.filter((a) => a.done < killedAt);
    // Once HAProxy's check has seen it gone (300 ms), every login lands on the survivor.
    const after = answers.filter((a) => a.at > killedAt + 1000);
    const around = answers.filter((a) => a.at >= killedAt && a.at <= killedAt + 1000);
    console.log(
      `two-node storm: ${before.length} logins in 1.5 s before the kill; ${around.filter((a) => !a.answer.startsWith('a OK')).length} of ${around.length} ` +
        `failed in the second after it; ${after.length} logins in the 2 s after, ${after.filter((a) => a.answer.startsWith('a OK')).length} ok`,
    );
    expect(before.length).toBeGreaterThan(0);
    expect(before.every((a) => a.answer.startsWith('a OK'))).toBe(true);
    expect(after.length).toBeGreaterThan(0);
    expect(after.filter((a) => !a.answer.startsWith('a OK'))).toEqual([]);
  }, 60_000);
});
