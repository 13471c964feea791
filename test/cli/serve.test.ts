// `postern serve` as the process a supervisor (systemd, Docker, Kubernetes) runs: it fails
// fast when it cannot listen, answers health and readiness, and drains on SIGTERM.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDovecot, type Dovecot } from '../helpers/dovecot.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { RawClient } from '../helpers/raw-client.js';

const BIN = resolve(__dirname, '../../bin/postern');
const PW = 'Account-pass-1';
let dovecot: Dovecot;

beforeAll(async () => {
  dovecot = await startDovecot();
}, 60_000);
afterAll(async () => dovecot?.stop());

interface Ports {
  imap: number;
  pop3: number;
  submission: number;
  api: number;
}

async function envFor(extra: Record<string, string> = {}): Promise<{ env: Record<string, string>; ports: Ports }> {
  const ports = { imap: await freePort(), pop3: await freePort(), submission: await freePort(), api: await freePort() };
  const env = {
    ...(process.env as Record<string, string>),
    POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-serve-')),
    POSTERN_AUTH__BCRYPT_ROUNDS: '10',
    POSTERN_IMAP__PORT: String(ports.imap),
    POSTERN_IMAP__TLS_PORT: '0',
    POSTERN_POP3__PORT: String(ports.pop3),
    POSTERN_POP3__TLS_PORT: '0',
    POSTERN_SUBMISSION__PORT: String(ports.submission),
    POSTERN_SUBMISSION__TLS_PORT: '0',
    POSTERN_LMTP__ENABLED: 'false',
    POSTERN_API__PORT: String(ports.api),
    POSTERN_UPSTREAM__IMAP_PORT: String(dovecot.imapPort),
    POSTERN_UPSTREAM__POP3_PORT: String(dovecot.pop3Port),
    POSTERN_UPSTREAM__MASTER_USER: dovecot.masterUser,
    POSTERN_UPSTREAM__MASTER_PASSWORD: dovecot.masterPassword,
    POSTERN_SERVER__SHUTDOWN_GRACE: '"2s"',
    ...extra,
  };
  return { env, ports };
}

function start(env: Record<string, string>): { proc: ChildProcess; out: () => string; exited: Promise<number | null> } {
  const proc = spawn(BIN, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, out: () => out, exited };
}

const listening = (s: { out: () => string }) =>
  waitFor(
    'postern listening',
    async () => {
      if (!s.out().includes('postern listening')) throw new Error(s.out());
    },
    30_000,
  );

describe('postern serve under a supervisor', () => {
  it('stops with exit 1 and says which address when a listener cannot bind', async () => {
    const taken = await freePort();
    const squatter: Server = createServer();
    await new Promise<void>((r) => squatter.listen(taken, '127.0.0.1', r));
    try {
      // A later listener (submission), and the second port of one already half bound (IMAP's TLS port).
      for (const key of ['POSTERN_SUBMISSION__PORT', 'POSTERN_IMAP__TLS_PORT']) {
        const { env } = await envFor({ [key]: String(taken) });
        const r = spawnSync(BIN, ['serve'], { env, encoding: 'utf8', timeout: 30_000 });
        expect(r.status, key).toBe(1);
        expect(r.stderr).toContain(`cannot start: listen EADDRINUSE: address already in use 127.0.0.1:${taken}`);
      }
    } finally {
      squatter.close();
    }
  });

  it('answers /healthz, and /readyz with what it depends on: 503 naming the upstream when it is down', async () => {
    const { env, ports } = await envFor();
    const up = start(env);
    const downEnv = await envFor({ POSTERN_UPSTREAM__IMAP_PORT: String(await freePort()) });
    const down = start(downEnv.env);
    try {
      await listening(up);
      await listening(down);
      const get = (port: number, path: string) =>
        fetch(`http://127.0.0.1:${port}${path}`).then(async (r) => ({ status: r.status, json: (await r.json()) as Record<string, any> }));
      expect(await get(ports.api, '/healthz')).toEqual({ status: 200, json: { status: 'ok' } });
      expect(await get(ports.api, '/readyz')).toEqual({ status: 200, json: { status: 'ready', checks: { store: 'ok', upstream: 'ok', listeners: 'ok' } } });
      const notReady = await get(downEnv.ports.api, '/readyz');
      expect(notReady.status).toBe(503);
      expect(notReady.json.checks).toMatchObject({ store: 'ok', listeners: 'ok' });
      expect(notReady.json.checks.upstream).toMatch(/ECONNREFUSED/);
      expect((await get(downEnv.ports.api, '/healthz')).status).toBe(200);
    } finally {
      up.proc.kill('SIGKILL');
      down.proc.kill('SIGKILL');
    }
  });

  it('drains on SIGTERM: every client is told, and the process exits 0 within the grace', async () => {
    const { env, ports } = await envFor();
    spawnSync(BIN, ['user', 'add', 'alice'], { env, input: `${PW}\n`, encoding: 'utf8' });
    dovecot.addUser('alice', 'upstream-pass');
    const s = start(env);
    await listening(s);
    const idle = await RawClient.open(ports.imap);
    await idle.until(/^\* OK/);
    idle.write(`a LOGIN alice ${PW}\r\nb SELECT INBOX\r\nc IDLE\r\n`);
    await idle.until(/^\+ idling/i);
    const waiting = await RawClient.open(ports.pop3);
    await waiting.until(/^\+OK/);
    const smtp = await RawClient.open(ports.submission);
    await smtp.until(/^220 /);
    const t0 = Date.now();
    s.proc.kill('SIGTERM');
    expect(await idle.closedWithin(5000)).toContain('* BYE [UNAVAILABLE] Server shutting down, reconnect in a moment.');
    expect(await waiting.closedWithin(5000)).toContain('-ERR [SYS/TEMP] Server shutting down');
    expect(await smtp.closedWithin(5000)).toMatch(/^421 .*Server shutting down/m);
    expect(await s.exited).toBe(0);
    // Told at once, gone well within the 2 s grace plus the process's own stop.
    expect(Date.now() - t0).toBeLessThan(6000);
    expect(s.out()).toContain('postern stopped');
  });
});

describe('SIGHUP', () => {
  it('applies new limits and log level at once, names what needs a restart, and keeps running on a bad file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postern-hup-'));
    const file = join(dir, 'postern.toml');
    writeFileSync(file, '[limits]\npassword_failures = 5\n');
    const { env, ports } = await envFor({ POSTERN_CONFIG: file });
    spawnSync(BIN, ['user', 'add', 'bob'], { env, input: `${PW}\n`, encoding: 'utf8' });
    spawnSync(BIN, ['user', 'add', 'carol'], { env, input: `${PW}\n`, encoding: 'utf8' });
    const s = start(env);
    await listening(s);
    const login = async (pass: string, user = 'bob') => {
      const c = await RawClient.open(ports.imap);
      await c.until(/^\* OK/);
      c.write(`a LOGIN ${user} "${pass}"\r\n`);
      const answer = (await c.until(/^a /)).split('\r\n').at(-1)!;
      c.close();
      return answer;
    };
    try {
      for (let i = 0; i < 2; i++) expect(await login(`Wrong-${i}-pw`)).toMatch(/^a NO \[AUTHENTICATIONFAILED\]/);
      // Two failures are counted already: a limit of 2 closes the window for the third.
      writeFileSync(file, '[limits]\npassword_failures = 2\n[log]\nlevel = "warn"\n[imap]\nmax_sessions_per_user = 3\n');
      s.proc.kill('SIGHUP');
      await waitFor('reload', async () => {
        if (!s.out().includes('configuration reloaded')) throw new Error(s.out());
      });
      const line = JSON.parse(
        s
          .out()
          .split('\n')
          .find((l) => l.includes('configuration reloaded'))!,
      ) as { needRestart?: string[] };
      expect(line.needRestart).toEqual(['imap']);
      expect(await login('Wrong-2-pw')).toMatch(/^a NO \[LIMIT\]/);
      // At warn, a failed login's decision line (warn) is still written; a success (info) is not.
      const before = s.out().length;
      await login(PW, 'carol');
      await login('Wrong-pw-1', 'carol');
      await waitFor('failure line', async () => {
        if (!s.out().slice(before).includes('"result":"failure"')) throw new Error('not yet');
      });
      expect(s.out().slice(before)).not.toContain('"result":"success"');

      writeFileSync(file, '[limits]\npassword_failures = "many"\n');
      s.proc.kill('SIGHUP');
      await waitFor('refusal', async () => {
        if (!s.out().includes('configuration not reloaded')) throw new Error(s.out());
      });
      expect(s.out()).toContain('limits.password_failures');
      expect(await login('Wrong-3-pw')).toMatch(/^a NO \[LIMIT\]/);
    } finally {
      s.proc.kill('SIGKILL');
    }
  });
});

describe('the Docker image as shipped', () => {
  it("runs its entrypoint with the image's environment: every listener on all addresses, healthy", async () => {
    const dockerfile = readFileSync(resolve(__dirname, '../../Dockerfile'), 'utf8');
    const last = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    const envBlock = /\nENV ((?:.*\\\n)*.*)/.exec(last)![1]!;
    const imageEnv = Object.fromEntries(
      envBlock
        .split(/\s*\\\n\s*|\s+(?=\w+=)/)
        .filter(Boolean)
        .map((kv) => kv.split('=') as [string, string]),
    );
    expect(imageEnv).toMatchObject({ POSTERN_IMAP__HOST: '0.0.0.0', POSTERN_API__HOST: '0.0.0.0' });
    const entrypoint = JSON.parse(/\nENTRYPOINT (\[.*\])/.exec(last)![1]!) as string[];
    const cmd = JSON.parse(/\nCMD (\[.*\])/.exec(last)![1]!) as string[];
    for (const port of /\nEXPOSE (.*)/.exec(last)![1]!.split(' ')) expect(Number(port)).toBeGreaterThan(0);
    // The image's data directory is its volume; here a temporary one stands in for it.
    const { env } = await envFor({ ...imageEnv, POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-image-')) });
    const proc = spawn(entrypoint[0]!, [...entrypoint.slice(1), ...cmd], { cwd: resolve(__dirname, '../..'), env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(
        'listening',
        async () => {
          if (!out.includes('postern listening')) throw new Error(out);
        },
        30_000,
      );
      const listening = JSON.parse(out.split('\n').find((l) => l.includes('postern listening'))!) as Record<string, string>;
      for (const key of ['imap', 'pop3', 'submission']) expect(listening[key]).toMatch(/^0\.0\.0\.0:\d+/);
      expect(listening.api).toMatch(/^http:\/\/0\.0\.0\.0:/);
      const health = /HEALTHCHECK .*\n\s*CMD (\[.*\])/.exec(last)![1]!;
      const [node, flag, script] = JSON.parse(health) as string[];
      const port = env.POSTERN_API__PORT!;
      const probe = spawnSync(node!, [flag!, script!.replace('8025', port)], { encoding: 'utf8', timeout: 10_000 });
      expect(probe.status).toBe(0);
    } finally {
      proc.kill('SIGTERM');
    }
  });
});
