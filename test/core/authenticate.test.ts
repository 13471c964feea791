import { beforeEach, describe, expect, it } from 'vitest';
import { totpCode } from '../../src/core/totp.js';
import type { AuthResult } from '../../src/core/types.js';
import { PASSWORD, actor, req, testCore, type TestCore } from '../helpers/core.js';

let c: TestCore;

async function addUser(name = 'alice') {
  return c.accounts.createUser(actor, { username: name, password: PASSWORD });
}

/** Enables TOTP through the real two-step enrolment; returns the seed and recovery codes. */
async function enableTotp(name = 'alice') {
  const { secret } = await c.accounts.setupTotp(actor, name);
  c.clock.advance(30_000);
  const { recoveryCodes } = await c.accounts.confirmTotp(actor, name, await totpCode(secret, c.clock.now()));
  c.clock.advance(30_000);
  return { secret, recoveryCodes };
}

const reason = (r: AuthResult) => (r.ok ? 'ok' : r.reason);

beforeEach(async () => {
  c = await testCore();
});

describe('scopes', () => {
  it('accepts the account password in every protocol scope when 2FA is off', async () => {
    await addUser();
    for (const scope of ['master', 'imap', 'pop3', 'smtp'] as const) {
      expect(reason(await c.auth.authenticate(req('alice', PASSWORD, scope)))).toBe('ok');
    }
  });

  it('limits an ASP to its scopes and never lets it into master', async () => {
    await addUser();
    const { password, asp } = await c.accounts.createAsp(actor, 'alice', { description: 'phone', scopes: ['imap'] });
    expect(password).toMatch(/^[a-z]{4} [a-z]{4} [a-z]{4} [a-z]{4}$/);
    const ok = await c.auth.authenticate(req('alice', password, 'imap'));
    expect(ok).toMatchObject({ ok: true, credential: 'asp', aspId: asp.id });
    expect(reason(await c.auth.authenticate(req('alice', password, 'smtp')))).toBe('scope_denied');
    expect(reason(await c.auth.authenticate(req('alice', password, 'pop3')))).toBe('scope_denied');
    expect(reason(await c.auth.authenticate(req('alice', password, 'master')))).toBe('asp_not_for_master');
  });

  it('accepts an ASP typed without spaces or in upper case', async () => {
    await addUser();
    const { password } = await c.accounts.createAsp(actor, 'alice', { description: '', scopes: ['imap', 'pop3', 'smtp'] });
    expect(reason(await c.auth.authenticate(req('alice', password.replace(/ /g, ''), 'pop3')))).toBe('ok');
    expect(reason(await c.auth.authenticate(req('alice', password.toUpperCase(), 'smtp')))).toBe('ok');
  });

  it('refuses an ASP after its expiry at login time, without any cleanup run', async () => {
    await addUser();
    const { password } = await c.accounts.createAsp(actor, 'alice', { description: '', scopes: ['imap'], expiresInMs: 3_600_000 });
    expect(reason(await c.auth.authenticate(req('alice', password)))).toBe('ok');
    c.clock.advance(3_600_000);
    expect(reason(await c.auth.authenticate(req('alice', password)))).toBe('asp_expired');
  });

  it('refuses a revoked ASP at once, even though it was just verified', async () => {
    await addUser();
    const { password, asp } = await c.accounts.createAsp(actor, 'alice', { description: '', scopes: ['imap'] });
    expect(reason(await c.auth.authenticate(req('alice', password)))).toBe('ok');
    await c.accounts.revokeAsp(actor, 'alice', asp.id);
    expect(reason(await c.auth.authenticate(req('alice', password)))).toBe('invalid_credentials');
  });

  it('records the last use of an ASP', async () => {
    await addUser();
    const { password, asp } = await c.accounts.createAsp(actor, 'alice', { description: '', scopes: ['smtp'] });
    await c.auth.authenticate(req('alice', password, 'smtp', '198.51.100.7'));
    const [stored] = await c.accounts.listAsps('alice');
    expect(stored).toMatchObject({ id: asp.id, lastUse: { ip: '198.51.100.7', protocol: 'smtp' } });
    const first = stored!.lastUse!.time;
    // To the minute: a reconnect from the same place does not rewrite it, a new address does.
    c.clock.advance(30_000);
    await c.auth.authenticate(req('alice', password, 'smtp', '198.51.100.7'));
    expect((await c.accounts.listAsps('alice'))[0]!.lastUse!.time).toEqual(first);
    await c.auth.authenticate(req('alice', password, 'smtp', '198.51.100.8'));
    expect((await c.accounts.listAsps('alice'))[0]!.lastUse).toMatchObject({ ip: '198.51.100.8', time: c.clock.now() });
    c.clock.advance(60_000);
    await c.auth.authenticate(req('alice', password, 'smtp', '198.51.100.8'));
    expect((await c.accounts.listAsps('alice'))[0]!.lastUse!.time).toEqual(c.clock.now());
  });

  it('refuses a disabled account even with the right password', async () => {
    await addUser();
    await c.accounts.setStatus(actor, 'alice', 'disabled');
    expect(reason(await c.auth.authenticate(req('alice', PASSWORD)))).toBe('account_disabled');
  });

  it('caps ASPs per user', async () => {
    c = await testCore();
    await addUser();
    for (let i = 0; i < 50; i++) await c.accounts.createAsp(actor, 'alice', { description: `${i}`, scopes: ['imap'] });
    await expect(c.accounts.createAsp(actor, 'alice', { description: 'one too many', scopes: ['imap'] })).rejects.toMatchObject({
      code: 'limit_reached',
    });
  }, 30_000);
});

describe('second factor', () => {
  it('does not turn 2FA on until a valid code confirms the setup', async () => {
    await addUser();
    await c.accounts.setupTotp(actor, 'alice');
    await expect(c.accounts.confirmTotp(actor, 'alice', '000000')).rejects.toMatchObject({ code: 'invalid_code' });
    expect((await c.accounts.get('alice')).twoFactor).toBe(false);
    expect(reason(await c.auth.authenticate(req('alice', PASSWORD, 'imap')))).toBe('ok');
  });

  it('with 2FA on, the password works only for master and only with a second factor', async () => {
    await addUser();
    const { secret } = await enableTotp();
    for (const scope of ['imap', 'pop3', 'smtp'] as const) {
      expect(reason(await c.auth.authenticate(req('alice', PASSWORD, scope)))).toBe('asp_required');
    }
    const missing = await c.auth.authenticate(req('alice', PASSWORD, 'master'));
    expect(missing).toMatchObject({ ok: false, reason: 'second_factor_required', methods: ['totp', 'recovery'] });
    const code = await totpCode(secret, c.clock.now());
    expect(reason(await c.auth.authenticate({ ...req('alice', PASSWORD, 'master'), secondFactor: { kind: 'totp', code } }))).toBe('ok');
  });

  it('keeps existing ASPs working for mail clients after 2FA is enabled', async () => {
    await addUser();
    const { password } = await c.accounts.createAsp(actor, 'alice', { description: '', scopes: ['imap'] });
    await enableTotp();
    expect(reason(await c.auth.authenticate(req('alice', password, 'imap')))).toBe('ok');
  });

  it('refuses a TOTP code presented a second time, and older codes after a newer one', async () => {
    await addUser();
    const { secret } = await enableTotp();
    const master = (code: string) => c.auth.authenticate({ ...req('alice', PASSWORD, 'master'), secondFactor: { kind: 'totp', code } });
    const older = await totpCode(secret, new Date(c.clock.now().getTime() - 30_000));
    const now = await totpCode(secret, c.clock.now());
    expect(reason(await master(now))).toBe('ok');
    expect(reason(await master(now))).toBe('second_factor_invalid');
    // Still inside the ±2 step window, but older than the step already accepted.
    expect(reason(await master(older))).toBe('second_factor_invalid');
    c.clock.advance(30_000);
    expect(reason(await master(await totpCode(secret, c.clock.now())))).toBe('ok');
  });

  it('refuses the enrolment code for sign-in (it was used once already)', async () => {
    await addUser();
    const { secret } = await c.accounts.setupTotp(actor, 'alice');
    const code = await totpCode(secret, c.clock.now());
    await c.accounts.confirmTotp(actor, 'alice', code);
    const r = await c.auth.authenticate({ ...req('alice', PASSWORD, 'master'), secondFactor: { kind: 'totp', code } });
    expect(reason(r)).toBe('second_factor_invalid');
  });

  it('accepts codes up to 2 steps away from now and refuses 3', async () => {
    await addUser();
    const { secret } = await enableTotp();
    c.clock.advance(5 * 30_000); // past the enrolment step, so only the window decides
    const at = (steps: number) => totpCode(secret, new Date(c.clock.now().getTime() + steps * 30_000));
    const master = async (code: string) => reason(await c.auth.authenticate({ ...req('alice', PASSWORD, 'master'), secondFactor: { kind: 'totp', code } }));
    expect(await master(await at(-3))).toBe('second_factor_invalid');
    expect(await master(await at(-2))).toBe('ok');
    expect(await master(await at(2))).toBe('ok');
    expect(await master(await at(3))).toBe('second_factor_invalid');
  });

  it('accepts each recovery code once, and not after regeneration', async () => {
    await addUser();
    const { recoveryCodes } = await enableTotp();
    expect(recoveryCodes).toHaveLength(10);
    expect(new Set(recoveryCodes).size).toBe(10);
    const master = (code: string) => c.auth.authenticate({ ...req('alice', PASSWORD, 'master'), secondFactor: { kind: 'recovery', code } });
    expect(reason(await master(recoveryCodes[0]!))).toBe('ok');
    expect(reason(await master(recoveryCodes[0]!))).toBe('second_factor_invalid');
    const fresh = await c.accounts.regenerateRecoveryCodes(actor, 'alice');
    expect(reason(await master(recoveryCodes[1]!))).toBe('second_factor_invalid');
    expect(reason(await master(fresh[1]!.toUpperCase().replace(/-/g, ' ')))).toBe('ok');
  });

  it('a recovery code is never a password', async () => {
    await addUser();
    const { recoveryCodes } = await enableTotp();
    expect(reason(await c.auth.authenticate(req('alice', recoveryCodes[0]!, 'master')))).toBe('invalid_credentials');
  });

  it('will not replace a working authenticator without turning it off first', async () => {
    await addUser();
    await enableTotp();
    await expect(c.accounts.setupTotp(actor, 'alice')).rejects.toMatchObject({ code: 'conflict' });
  });

  it('stores the TOTP seed sealed, not in clear', async () => {
    await addUser();
    const { secret } = await enableTotp();
    const user = await c.accounts.get('alice');
    expect(JSON.stringify(user)).not.toContain(secret);
    expect(user.totp?.sealedSecret).toMatch(/^v1\.k1\./);
  });

  it('an admin reset replaces the factors and the password with a temporary password and recovery codes, and leaves a notice', async () => {
    await addUser();
    await enableTotp();
    const { temporaryPassword, recoveryCodes } = await c.accounts.resetSecondFactor(actor, 'alice');
    expect(reason(await c.auth.authenticate(req('alice', PASSWORD, 'master')))).toBe('invalid_credentials');
    expect(await c.auth.authenticate(req('alice', temporaryPassword, 'master'))).toMatchObject({
      ok: false,
      reason: 'second_factor_required',
      methods: ['recovery'],
    });
    expect(reason(await c.auth.authenticate(req('alice', temporaryPassword, 'imap')))).toBe('asp_required');
    const r = await c.auth.authenticate({ ...req('alice', temporaryPassword, 'master'), secondFactor: { kind: 'recovery', code: recoveryCodes[0]! } });
    expect(r).toMatchObject({ ok: true, notices: ['two_factor_reset_by_admin'], mustChangePassword: true });
  });

  it('a temporary password opens only master, needs the second factor, and expires', async () => {
    await addUser();
    const { secret } = await enableTotp();
    const temp = await c.accounts.issueTemporaryPassword(actor, 'alice');
    expect(reason(await c.auth.authenticate(req('alice', temp, 'imap')))).toBe('asp_required');
    expect(reason(await c.auth.authenticate(req('alice', temp, 'master')))).toBe('second_factor_required');
    const code = await totpCode(secret, c.clock.now());
    const r = await c.auth.authenticate({ ...req('alice', temp, 'master'), secondFactor: { kind: 'totp', code } });
    expect(r).toMatchObject({ ok: true, mustChangePassword: true });
    c.clock.advance(24 * 3_600_000);
    expect(reason(await c.auth.authenticate(req('alice', temp, 'master')))).toBe('password_expired');
  });

  it('a temporary password of an account without 2FA is still refused on IMAP', async () => {
    await addUser();
    const temp = await c.accounts.issueTemporaryPassword(actor, 'alice');
    expect(reason(await c.auth.authenticate(req('alice', temp, 'imap')))).toBe('scope_denied');
    expect(await c.auth.authenticate(req('alice', temp, 'master'))).toMatchObject({ ok: true, mustChangePassword: true });
  });
});

describe('unknown users and usernames', () => {
  it('spends a bcrypt check on unknown users as on known ones', async () => {
    await addUser();
    c.hasher.verifies = 0;
    expect(reason(await c.auth.authenticate(req('nobody', 'Wrong-pass-1')))).toBe('invalid_credentials');
    const unknown = c.hasher.verifies;
    c.hasher.verifies = 0;
    expect(reason(await c.auth.authenticate(req('alice', 'Wrong-pass-1')))).toBe('invalid_credentials');
    expect(unknown).toBe(1);
    expect(c.hasher.verifies).toBe(1);
  });

  it('treats case and Unicode variants of a username as one account', async () => {
    await c.accounts.createUser(actor, { username: 'Ålice', password: PASSWORD });
    const decomposed = 'A\u030Alice'.toUpperCase();
    expect(reason(await c.auth.authenticate(req(decomposed, PASSWORD)))).toBe('ok');
    await expect(c.accounts.createUser(actor, { username: 'åLICE', password: PASSWORD })).rejects.toMatchObject({ code: 'conflict' });
  });
});
