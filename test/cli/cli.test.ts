import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as openpgp from 'openpgp';
import { describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/load.js';

const BIN = resolve(__dirname, '../../bin/postern');
const dataDir = mkdtempSync(join(tmpdir(), 'postern-cli-'));
const env = { ...process.env, POSTERN_SERVER__DATA_DIR: dataDir, POSTERN_AUTH__BCRYPT_ROUNDS: '10' };

function postern(args: string[], input = '', extraEnv: Record<string, string> = {}) {
  const r = spawnSync(BIN, args, { input, env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

async function authenticate(username: string, secret: string, scope: 'imap' | 'smtp' | 'master') {
  const app = await createApp(loadConfig({ env: { ...env, POSTERN_LOG__LEVEL: 'silent' } }));
  try {
    return await app.auth.authenticate({ username, secret, scope, ip: '127.0.0.1', protocol: scope === 'master' ? 'http' : scope });
  } finally {
    await app.close();
  }
}

describe('postern CLI', () => {
  it('creates users from a piped password and reports user errors with exit code 1', () => {
    expect(postern(['user', 'add', 'Carol', '--role', 'auditor'], 'Pass-word-42\n')).toMatchObject({ code: 0 });
    const dup = postern(['user', 'add', 'carol'], 'Pass-word-42\n');
    expect(dup.code).toBe(1);
    expect(dup.err).toContain('user "carol" already exists');
    const weak = postern(['user', 'add', 'dave'], 'short\n');
    expect(weak.code).toBe(1);
    expect(weak.err).toContain('password needs at least 8 characters');
    expect(postern(['user', 'add', 'erin', '--role', 'root'], 'Pass-word-42\n').code).toBe(1);
    const shown = postern(['user', 'show', 'CAROL', '--json']);
    expect(JSON.parse(shown.out)).toMatchObject({ username: 'carol', role: 'auditor', twoFactor: false });
    expect(postern(['user', 'show', 'nobody']).code).toBe(1);
  });

  it('prints a new ASP once, and that ASP opens only its scopes until revoked', async () => {
    expect(postern(['user', 'add', 'frank'], 'Pass-word-42\n').code).toBe(0);
    const made = postern(['asp', 'create', 'frank', '--scope', 'imap', '--description', 'Thunderbird', '--expires', '30d']);
    expect(made.code).toBe(0);
    const password = /password: ([a-z]{4} [a-z]{4} [a-z]{4} [a-z]{4})/.exec(made.out)?.[1];
    const id = /id:\s+([0-9a-f]{24})/.exec(made.out)?.[1];
    expect(password && id).toBeTruthy();
    expect(await authenticate('frank', password!, 'imap')).toMatchObject({ ok: true, aspId: id });
    expect(await authenticate('frank', password!, 'smtp')).toMatchObject({ ok: false, reason: 'scope_denied' });
    const list = postern(['asp', 'list', 'frank']);
    expect(list.out).toContain('Thunderbird');
    expect(list.out).not.toContain(password!);
    expect(postern(['asp', 'create', 'frank', '--scope', 'master']).code).toBe(1);
    expect(postern(['asp', 'revoke', 'frank', id!]).code).toBe(0);
    expect(await authenticate('frank', password!, 'imap')).toMatchObject({ ok: false, reason: 'invalid_credentials' });
    expect(postern(['asp', 'revoke', 'frank', id!]).code).toBe(1);
  });

  it('sets and removes a PGP key for stored mail, refusing what is not a public key', async () => {
    const { publicKey, privateKey } = await openpgp.generateKey({
      type: 'ecc',
      curve: 'curve25519Legacy',
      userIDs: [{ email: 'hugo@example.test' }],
      format: 'armored',
    });
    expect(postern(['user', 'add', 'hugo'], 'Pass-word-42\n').code).toBe(0);
    const set = postern(['pgp', 'set', 'hugo', '-'], publicKey);
    expect(set.code).toBe(0);
    expect(set.out).toMatch(/key [0-9A-F]{40}, stored mail encrypted/);
    expect(postern(['user', 'show', 'hugo']).out).toMatch(/pgp\s+[0-9A-F]{40} \(stored mail encrypted\)/);
    const secret = postern(['pgp', 'set', 'hugo', '-'], privateKey);
    expect(secret.code).toBe(1);
    expect(secret.err).toContain('must be an armored OpenPGP public key');
    expect(postern(['pgp', 'remove', 'hugo']).code).toBe(0);
    expect(postern(['user', 'show', 'hugo']).out).toMatch(/pgp\s+none/);
  });

  it('changes passwords, resets 2FA, and shows the audit trail as a table or JSON', async () => {
    expect(postern(['user', 'add', 'gina'], 'Pass-word-42\n').code).toBe(0);
    expect(postern(['user', 'passwd', 'gina'], 'New-pass-word-7\n').code).toBe(0);
    expect(await authenticate('gina', 'Pass-word-42', 'imap')).toMatchObject({ ok: false });
    expect(await authenticate('gina', 'New-pass-word-7', 'imap')).toMatchObject({ ok: true });
    expect(postern(['2fa', 'reset', 'gina']).code).toBe(0);
    const table = postern(['audit', '--user', 'gina']);
    expect(table.code).toBe(0);
    const lines = table.out.trim().split('\n');
    expect(lines[0]).toMatch(/^TIME\s+ACTION\s+RESULT\s+REASON\s+USER/);
    expect(lines[2]).toMatch(/2fa\.reset\s+success/);
    const json = postern(['audit', '--user', 'gina', '--action', 'auth', '--result', 'failure', '--since', '1h', '--json']);
    const events = json.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ action: 'auth', result: 'failure', reason: 'invalid_credentials', username: 'gina' });
    expect(postern(['audit', '--since', 'yesterday']).code).toBe(1);
    expect(postern(['audit', '--action', 'login']).err).toContain('action must be one of');
    expect(
      postern(['audit', '--since', new Date(Date.now() - 3_600_000).toISOString(), '--user', 'gina', '--json'])
        .out.trim()
        .split('\n').length,
    ).toBeGreaterThan(0);
  });

  it('creates, lists and revokes API tokens that the API accepts', async () => {
    const made = postern(['token', 'create', '--role', 'auditor', '--description', 'SIEM']);
    expect(made.code).toBe(0);
    const token = /token: (pat_\S+)/.exec(made.out)?.[1];
    const id = /id:\s+([0-9a-f]{24})/.exec(made.out)?.[1];
    expect(token && id).toBeTruthy();
    const app = await createApp(loadConfig({ env: { ...env, POSTERN_LOG__LEVEL: 'silent' } }));
    try {
      expect(await app.sessions.principal(token!)).toMatchObject({ kind: 'token', role: 'auditor' });
    } finally {
      await app.close();
    }
    const list = postern(['token', 'list']);
    expect(list.out).toContain('SIEM');
    expect(list.out).not.toContain(token!);
    expect(postern(['token', 'create', '--role', 'user']).code).toBe(1);
    expect(postern(['token', 'revoke', id!]).code).toBe(0);
    expect(postern(['token', 'revoke', id!]).code).toBe(1);
  });

  it('imports users with their hashes from a Dovecot passwd-file, reporting bad lines', async () => {
    const sha = execFileSync('doveadm', ['pw', '-s', 'SHA512-CRYPT', '-p', 'Old-system-pass-1'], { encoding: 'utf8' }).trim();
    const ssha = execFileSync('doveadm', ['pw', '-s', 'SSHA256', '-p', 'Other-pass-2'], { encoding: 'utf8' }).trim();
    const file = join(dataDir, 'passwd');
    writeFileSync(file, `# exported from the old server\nhenry:${sha}:1000:1000::/home/henry\nirene:${ssha}\nbroken:{MD5}xyz\n`);
    const dry = postern(['user', 'import', '--dry-run', file]);
    expect(dry.out).toContain('henry: sha512-crypt');
    expect(dry.out).toContain('would import 2 user(s); nothing changed');
    expect(dry.err).toContain('line 4:');
    expect(postern(['user', 'show', 'henry']).code).toBe(1);
    const r = postern(['user', 'import', file]);
    expect(r.code).toBe(1);
    expect(r.out).toContain('imported 2 user(s)');
    expect(r.err).toContain('line 4:');
    expect(await authenticate('henry', 'Old-system-pass-1', 'imap')).toMatchObject({ ok: true });
    expect(await authenticate('irene', 'Other-pass-2', 'imap')).toMatchObject({ ok: true });
    expect(await authenticate('irene', 'Other-pass-3', 'imap')).toMatchObject({ ok: false });
    expect(postern(['user', 'add', 'jack', '--hash', sha]).code).toBe(0);
  });

  it('exits 2 when the store is down and 1 on a configuration error', () => {
    const down = postern(['user', 'list'], '', {
      POSTERN_STORE__KIND: 'mongodb',
      POSTERN_STORE__MONGODB_URL: 'mongodb://127.0.0.1:9/postern?serverSelectionTimeoutMS=300',
    });
    expect(down.code).toBe(2);
    expect(down.err).toContain('MongoDB is unavailable');
    const bad = postern(['user', 'list'], '', { POSTERN_AUTH__BCRYPT_ROUNDS: '3' });
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('auth.bcrypt_rounds');
  });

  it('prints its version, runs through a symlink as npx does, and finds its data from any directory', () => {
    const link = join(mkdtempSync(join(tmpdir(), 'postern-bin-')), 'postern');
    symlinkSync(BIN, link);
    const v = spawnSync(link, ['--version'], { encoding: 'utf8' });
    expect(v.status).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    // A relative data_dir in a config file is taken from the file's directory, not the caller's.
    const site = mkdtempSync(join(tmpdir(), 'postern-site-'));
    writeFileSync(join(site, 'postern.toml'), '[server]\ndata_dir = "state"\n');
    const { POSTERN_SERVER__DATA_DIR: _omit, ...bare } = env;
    void _omit;
    const run = (args: string[], cwd: string, input = '') =>
      spawnSync(link, ['--config', join(site, 'postern.toml'), ...args], { cwd, input, env: { ...bare, POSTERN_LOG__LEVEL: 'silent' }, encoding: 'utf8' });
    expect(run(['user', 'add', 'zed'], tmpdir(), 'Pass-word-42\n').status).toBe(0);
    const elsewhere = run(['user', 'show', 'zed', '--json'], '/');
    expect(elsewhere.status, elsewhere.stderr).toBe(0);
    expect(JSON.parse(elsewhere.stdout)).toMatchObject({ username: 'zed' });
  });

  it('says where it looked instead of opening an empty database, and names a missing import file', () => {
    const nowhere = join(tmpdir(), `postern-nowhere-${Date.now()}`);
    const r = postern(['user', 'list'], '', { POSTERN_SERVER__DATA_DIR: nowhere });
    expect(r.code).toBe(1);
    expect(r.err).toContain(`no postern database at ${nowhere}/postern.sqlite`);
    const missing = postern(['user', 'import', '/nonexistent/passwd']);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('cannot read /nonexistent/passwd: no such file');
  });

  it("changes an account's role and email, and deletes it", () => {
    expect(postern(['user', 'add', 'yara'], 'Pass-word-42\n').code).toBe(0);
    const set = postern(['user', 'set', 'yara', '--role', 'auditor', '--email', 'yara@example.test']);
    expect(set.code, set.err).toBe(0);
    expect(JSON.parse(postern(['user', 'show', 'yara', '--json']).out)).toMatchObject({ role: 'auditor', email: 'yara@example.test' });
    expect(postern(['user', 'set', 'yara', '--email', 'not an address']).code).toBe(1);
    expect(postern(['user', 'set', 'yara']).err).toContain('nothing to change');
    expect(postern(['user', 'delete', 'yara']).code).toBe(0);
    expect(postern(['user', 'show', 'yara']).code).toBe(1);
  });
});
