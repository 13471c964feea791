import { execFileSync } from 'node:child_process';
import { pbkdf2Sync, randomBytes, scryptSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { needsRehash, parseStoredHash } from '../../src/core/password-schemes.js';
import { WorkerPool } from '../../src/workers/worker-pool.js';
import { actor, req, testCore, type TestCore } from '../helpers/core.js';

const PW = 'Imported-pass-1';

/** A real hash from Dovecot's own tool, as an existing server would hold it. */
const doveadm = (scheme: string, password = PW) => execFileSync('doveadm', ['pw', '-s', scheme, '-p', password], { encoding: 'utf8' }).trim();

/** Wire's scrypt form and WildDuck's PBKDF2 form, made with Node's own KDFs. */
function scryptHash(password: string): string {
  const salt = randomBytes(32);
  return `14|8|1|${salt.toString('base64')}|${scryptSync(password, salt, 64, { N: 2 ** 14, r: 8, p: 1 }).toString('base64')}`;
}
function pbkdf2Hash(password: string): string {
  const salt = randomBytes(16);
  const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');
  return `$pbkdf2-sha512$i=25000,l=64$${b64(salt)}$${b64(pbkdf2Sync(password, salt, 25000, 64, 'sha512'))}`;
}

let pool: WorkerPool;
let c: TestCore;

beforeAll(async () => {
  pool = new WorkerPool({ cost: 10, threads: 2, maxQueue: 100 });
  c = await testCore({ hasher: pool, bcryptCost: 10 });
});
afterAll(async () => pool?.close());

describe('imported password hashes', () => {
  const formats: Array<[string, () => string]> = [
    ['{SHA512-CRYPT}', () => doveadm('SHA512-CRYPT')],
    ['{SHA256-CRYPT}', () => doveadm('SHA256-CRYPT')],
    ['{SSHA256}', () => doveadm('SSHA256')],
    ['{SSHA512}', () => doveadm('SSHA512')],
    ['{BLF-CRYPT}', () => doveadm('BLF-CRYPT')],
    ['{ARGON2ID}', () => doveadm('ARGON2ID')],
    ['scrypt log2N|r|p|salt|hash', () => scryptHash(PW)],
    ['PBKDF2 (WildDuck)', () => pbkdf2Hash(PW)],
    ['{MD5-CRYPT}', () => doveadm('MD5-CRYPT')],
    ['{CRYPT} (as doveadm makes it)', () => doveadm('CRYPT')],
    [
      '{CRYPT} in the traditional DES form',
      () =>
        `{CRYPT}${execFileSync('python3', ['-W', 'ignore', '-c', `import crypt; print(crypt.crypt(${JSON.stringify(PW)}, 'q7'))`], { encoding: 'utf8' }).trim()}`,
    ],
    ['{SSHA}', () => doveadm('SSHA')],
    ['{PBKDF2} (Dovecot)', () => doveadm('PBKDF2')],
  ];

  for (const [i, [name, make]] of formats.entries()) {
    it(`verifies ${name}, refuses a wrong password, and re-hashes to bcrypt at the next good login`, async () => {
      const username = `imported${i}`;
      const stored = make();
      expect(parseStoredHash(stored)).not.toBeNull();
      await c.accounts.importUser(actor, { username, passwordHash: stored });
      expect(await c.auth.authenticate(req(username, 'Wrong-pass-1'))).toMatchObject({ ok: false, reason: 'invalid_credentials' });
      expect(await c.auth.authenticate(req(username, PW))).toMatchObject({ ok: true });
      const after = (await c.accounts.get(username)).passwordHash;
      expect(after).toMatch(/^\$2b\$10\$/);
      expect(needsRehash(after, 10)).toBe(false);
      c.clock.advance(10 * 60_000); // past the verified-credential cache
      expect(await c.auth.authenticate(req(username, PW))).toMatchObject({ ok: true });
      const { events } = await c.store.audit.query({ username, action: 'password.rehash', limit: 5 }, c.clock.now());
      expect(events).toHaveLength(1);
    }, 30_000);
  }

  it('hashes a {PLAIN} password at import: the cleartext is never stored', async () => {
    await c.accounts.importUser(actor, { username: 'plain', passwordHash: doveadm('PLAIN') });
    const stored = (await c.accounts.get('plain')).passwordHash;
    expect(stored).toMatch(/^\$2b\$10\$/);
    expect(stored).not.toContain(PW);
    expect(await c.auth.authenticate(req('plain', PW))).toMatchObject({ ok: true });
  });

  it('spends a bcrypt check on imported fast hashes, so their accounts look like unknown ones', async () => {
    await c.accounts.importUser(actor, { username: 'fast', passwordHash: doveadm('SSHA256') });
    c.hasher.verifies = 0;
    await c.auth.authenticate(req('fast', 'Wrong-pass-1'));
    expect(c.hasher.verifies).toBe(2);
  });

  it('refuses to import a hash in an unknown form, and never matches a damaged one', async () => {
    await expect(c.accounts.importUser(actor, { username: 'bad', passwordHash: '{MD5}abc' })).rejects.toMatchObject({ code: 'invalid_input' });
    await expect(c.accounts.importUser(actor, { username: 'bad', passwordHash: 'plaintext' })).rejects.toMatchObject({ code: 'invalid_input' });
    await c.accounts.importUser(actor, { username: 'damaged', passwordHash: '14|8|1|AAAA|AAAA' });
    expect(await c.auth.authenticate(req('damaged', PW))).toMatchObject({ ok: false, reason: 'invalid_credentials' });
  });
});
