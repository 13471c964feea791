// Account and session lifecycle: credentials that change take effect everywhere at once.
import { beforeEach, describe, expect, it } from 'vitest';
import type { SignInRequest } from '../../src/core/web-sessions.js';
import { totpCode } from '../../src/core/totp.js';
import { PASSWORD, actor, testCore, type TestCore } from '../helpers/core.js';

let c: TestCore;
const signIn = (extra: Partial<SignInRequest> = {}) =>
  c.sessions.signIn({ username: 'alice', password: PASSWORD, ip: '192.0.2.10', userAgent: 'test', ...extra });
const ok = async (extra: Partial<SignInRequest> = {}) => {
  const r = await signIn(extra);
  if (!r.ok) throw new Error(`sign-in refused: ${r.reason}`);
  return r;
};

async function enableTotp(): Promise<string> {
  const { secret } = await c.accounts.setupTotp(actor, 'alice');
  await c.accounts.confirmTotp(actor, 'alice', await totpCode(secret, c.clock.now()));
  return secret;
}

beforeEach(async () => {
  c = await testCore();
  await c.accounts.createUser(actor, { username: 'alice', password: PASSWORD });
});

describe('trusted devices', () => {
  it('are never issued for a second factor that was not checked', async () => {
    // No 2FA: a made-up code is ignored, and so is the wish to trust the device.
    for (const secondFactor of [
      { kind: 'totp', code: '000000' },
      { kind: 'recovery', code: 'abcd-efgh-ijkl' },
    ] as const) {
      expect((await ok({ trustDevice: true, secondFactor })).deviceToken).toBeNull();
    }
    expect(await c.sessions.listDevices((await c.accounts.get('alice')).id)).toHaveLength(0);
  });

  it('are issued after a real second factor, skip it afterwards, and cannot mint more trust', async () => {
    c.clock.advance(60_000);
    const secret = await enableTotp();
    c.clock.advance(60_000);
    const first = await ok({ trustDevice: true, secondFactor: { kind: 'totp', code: await totpCode(secret, c.clock.now()) } });
    expect(first.deviceToken).toMatch(/^ptd_/);
    const onDevice = await ok({ deviceToken: first.deviceToken!, trustDevice: true, secondFactor: { kind: 'totp', code: '000000' } });
    expect(onDevice.deviceToken).toBeNull();
    expect(await c.sessions.listDevices((await c.accounts.get('alice')).id)).toHaveLength(1);
  });
});

describe('web sessions and trusted devices end when credentials change', () => {
  const alive = async (token: string) => (await c.sessions.principal(token)) !== null;

  it('a password change ends every other web session and every trusted device, in the core (CLI and API alike)', async () => {
    const secret = await enableTotp();
    c.clock.advance(60_000);
    const mine = await ok({ trustDevice: true, secondFactor: { kind: 'totp', code: await totpCode(secret, c.clock.now()) } });
    c.clock.advance(60_000);
    const other = await ok({ secondFactor: { kind: 'totp', code: await totpCode(secret, c.clock.now()) } });
    const alice = await c.accounts.get('alice');
    await c.accounts.setPassword({ name: 'alice', sessionId: mine.session.id }, 'alice', 'Brand-new-pass-2');
    expect(await alive(mine.token)).toBe(true);
    expect(await alive(other.token)).toBe(false);
    expect(await c.sessions.listDevices(alice.id)).toHaveLength(0);
    // An administrator's change (or the CLI's) keeps none.
    await c.accounts.setPassword(actor, 'alice', 'Brand-new-pass-3');
    expect(await alive(mine.token)).toBe(false);
  });

  it('a disable ends the sessions for good: enabling again does not bring them back', async () => {
    const s = await ok();
    await c.accounts.setStatus(actor, 'alice', 'disabled');
    expect(await alive(s.token)).toBe(false);
    await c.accounts.setStatus(actor, 'alice', 'active');
    expect(await alive(s.token)).toBe(false);
    expect(await alive((await ok()).token)).toBe(true);
  });

  it('turning 2FA on or off, and an admin reset, end the other sessions and the trusted devices', async () => {
    const before = await ok();
    const secret = await enableTotp();
    expect(await alive(before.token)).toBe(false);
    c.clock.advance(60_000);
    const trusted = await ok({ trustDevice: true, secondFactor: { kind: 'totp', code: await totpCode(secret, c.clock.now()) } });
    await c.accounts.resetSecondFactor(actor, 'alice');
    expect(await alive(trusted.token)).toBe(false);
    expect(await c.sessions.listDevices((await c.accounts.get('alice')).id)).toHaveLength(0);
  });
});

describe('live mail sessions are checked again by the core rules', () => {
  const grantOf = async (secret: string, scope: 'imap' | 'pop3' = 'imap') => {
    const r = await c.auth.authenticate({ username: 'alice', secret, scope, ip: '192.0.2.10', protocol: scope });
    if (!r.ok) throw new Error(r.reason);
    return r.grant;
  };

  it('a revoked ASP ends only its own sessions; a new password ends only the password sessions', async () => {
    const phone = await c.accounts.createAsp(actor, 'alice', { description: 'phone', scopes: ['imap'] });
    const laptop = await c.accounts.createAsp(actor, 'alice', { description: 'laptop', scopes: ['imap', 'pop3'] });
    const grants = [await grantOf(phone.password), await grantOf(laptop.password, 'pop3'), await grantOf(PASSWORD)];
    expect(await c.auth.stillGranted(grants)).toEqual([true, true, true]);
    await c.accounts.revokeAsp(actor, 'alice', phone.asp.id);
    expect(await c.auth.stillGranted(grants)).toEqual([false, true, true]);
    await c.accounts.setPassword(actor, 'alice', 'Brand-new-pass-2');
    expect(await c.auth.stillGranted(grants)).toEqual([false, true, false]);
    await c.accounts.setStatus(actor, 'alice', 'disabled');
    expect(await c.auth.stillGranted(grants)).toEqual([false, false, false]);
  });

  it('turning 2FA on ends the password sessions; turning encryption on ends them all, to start again sealed', async () => {
    const asp = await c.accounts.createAsp(actor, 'alice', { description: '', scopes: ['imap'] });
    const grants = [await grantOf(PASSWORD), await grantOf(asp.password)];
    await enableTotp();
    expect(await c.auth.stillGranted(grants)).toEqual([false, true]);
    const { privateKey, publicKey } = await (await import('openpgp')).generateKey({ userIDs: [{ email: 'alice@example.test' }], format: 'armored' });
    void privateKey;
    await c.accounts.setPgpKey(actor, 'alice', publicKey, true);
    expect(await c.auth.stillGranted(grants)).toEqual([false, false]);
  });
});

describe('profile links', () => {
  it('open once within their lifetime, and never after it', async () => {
    const s = await ok();
    const me = { name: 'alice', sessionId: s.session.id };
    const used = await c.accounts.issueProfileLink(me, 'alice');
    expect((await c.accounts.redeemProfileLink(used.token, '192.0.2.10')).asp.scopes).toEqual(['imap', 'smtp']);
    await expect(c.accounts.redeemProfileLink(used.token, '192.0.2.10')).rejects.toMatchObject({ code: 'not_found' });
    const late = await c.accounts.issueProfileLink(me, 'alice');
    c.clock.advance(10 * 60_000);
    await expect(c.accounts.redeemProfileLink(late.token, '192.0.2.10')).rejects.toMatchObject({ code: 'not_found' });
    await expect(c.accounts.redeemProfileLink(`${s.user.id}.guessed`, null)).rejects.toMatchObject({ code: 'not_found' });
  });
});

describe('step-up: sensitive changes need a recent proof', () => {
  it('allows them within the window after a sign-in, and again after the password is entered anew', async () => {
    const s = await ok();
    const me = { name: 'alice', sessionId: s.session.id };
    await c.accounts.createAsp(me, 'alice', { description: 'phone', scopes: ['imap'] });
    c.clock.advance(5 * 60_000 + 1);
    await expect(c.accounts.createAsp(me, 'alice', { description: 'tablet', scopes: ['imap'] })).rejects.toMatchObject({ code: 'step_up_required' });
    await expect(c.accounts.setupTotp(me, 'alice')).rejects.toMatchObject({ code: 'step_up_required' });
    await expect(c.accounts.regenerateRecoveryCodes(me, 'alice')).rejects.toMatchObject({ code: 'step_up_required' });
    await expect(c.accounts.setPgpKey(me, 'alice', null, false)).rejects.toMatchObject({ code: 'step_up_required' });
    await expect(c.accounts.issueProfileLink(me, 'alice')).rejects.toMatchObject({ code: 'step_up_required' });
    await expect(c.accounts.setEmail(me, 'alice', 'alice@example.org')).rejects.toMatchObject({ code: 'step_up_required' });
    await expect(c.sessions.createApiToken(me, 'auditor', '', null)).rejects.toMatchObject({ code: 'step_up_required' });
    expect((await c.sessions.confirm({ session: s.session, user: s.user }, { password: 'Wrong-pass-9!', ip: null, userAgent: null })).ok).toBe(false);
    await expect(c.accounts.createAsp(me, 'alice', { description: 'tablet', scopes: ['imap'] })).rejects.toMatchObject({ code: 'step_up_required' });
    expect((await c.sessions.confirm({ session: s.session, user: s.user }, { password: PASSWORD, ip: null, userAgent: null })).ok).toBe(true);
    await c.accounts.createAsp(me, 'alice', { description: 'tablet', scopes: ['imap'] });
    // Another session's proof is its own.
    const other = await ok();
    c.clock.advance(5 * 60_000 + 1);
    await expect(c.accounts.createAsp({ name: 'alice', sessionId: other.session.id }, 'alice', { description: 'x', scopes: ['imap'] })).rejects.toMatchObject({
      code: 'step_up_required',
    });
  });
});

describe('ASPs bound to networks', () => {
  it('open only from their addresses, cached or not, and a live session from elsewhere cannot exist', async () => {
    const { password, asp } = await c.accounts.createAsp(actor, 'alice', {
      description: 'office',
      scopes: ['imap'],
      networks: ['192.0.2.0/24', '2001:db8::/32'],
    });
    expect(asp.networks).toEqual(['192.0.2.0/24', '2001:db8::/32']);
    const at = (ip: string | null) => c.auth.authenticate({ username: 'alice', secret: password, scope: 'imap', ip, protocol: 'imap' });
    const first = await at('192.0.2.10');
    expect(first.ok).toBe(true);
    // The secret is in the verified cache now: the address is still checked.
    expect(await at('198.51.100.7')).toMatchObject({ ok: false, reason: 'address_denied' });
    expect(await at(null)).toMatchObject({ ok: false, reason: 'address_denied' });
    expect((await at('2001:db8::42')).ok).toBe(true);
    if (first.ok) expect(await c.auth.stillGranted([first.grant])).toEqual([true]);
    await expect(c.accounts.createAsp(actor, 'alice', { description: '', scopes: ['imap'], networks: ['10.0.0.0/33'] })).rejects.toMatchObject({
      code: 'invalid_input',
    });
    await expect(c.accounts.createAsp(actor, 'alice', { description: '', scopes: ['imap'], networks: ['not-an-ip'] })).rejects.toMatchObject({
      code: 'invalid_input',
    });
  });
});

describe('a temporary password', () => {
  it('opens nothing but its own change, in the core as at the API', async () => {
    const { temporaryPassword, recoveryCodes } = await c.accounts.resetSecondFactor(actor, 'alice');
    const s = await ok({ password: temporaryPassword, secondFactor: { kind: 'recovery', code: recoveryCodes[0]! } });
    expect(s.mustChangePassword).toBe(true);
    const me = { name: 'alice', sessionId: s.session.id };
    await expect(c.accounts.createAsp(me, 'alice', { description: '', scopes: ['imap'] })).rejects.toMatchObject({ code: 'password_change_required' });
    await expect(c.accounts.setupTotp(me, 'alice')).rejects.toMatchObject({ code: 'password_change_required' });
    await c.accounts.setPassword(me, 'alice', 'Brand-new-pass-2');
    await c.accounts.createAsp(me, 'alice', { description: '', scopes: ['imap'] });
  });
});
